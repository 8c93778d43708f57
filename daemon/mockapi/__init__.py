"""The mock WhatsApp Cloud API (`wa-sender mock-api`): the real wire format, never a database."""
