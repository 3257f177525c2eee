"""The simulator: scenarios, bringing networks of real processes up and down, and traffic."""
