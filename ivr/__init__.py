"""hotline: IVR and call routing for telecom customer-service hotlines, on a real Asterisk."""

from ivr import native

# Before anything imports the call engine: its compiled build, when built and up to date.
native.install()
