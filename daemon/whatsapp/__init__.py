"""The real WhatsApp Cloud API: the send client, webhook parsing, the signature."""
