"""Operations behind the CLI, without argument parsing: reports, GDPR, the campaign
lifecycle (stops), the embedded database from outside, rendering, watching, the demo."""
