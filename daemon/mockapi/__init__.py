"""The mock WhatsApp Cloud API (`wa-sender mock`): the real wire format, never a database."""
