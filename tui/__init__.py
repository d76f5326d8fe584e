"""vmkeep's Textual TUI. Talks to the appliance only through appliance.client/api/errors."""
