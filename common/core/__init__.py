"""The foundation every package stands on: settings, the error types, logging, strict schemas."""
