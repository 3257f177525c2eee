"""The classroom: a live web view of a running network for trainers (docs/classroom.md).

This package's own namespace holds only what the command line needs to build its parser
(importing it loads nothing else: no web server, no attacks).
"""

DEFAULT_PORT = 8024
"""The page's TCP port unless ``--port`` says otherwise."""
DEFAULT_SCENARIO = "red-notice"
"""FR, DE, IT, ES, NL and the General Secretariat (GS), which publishes notices."""
