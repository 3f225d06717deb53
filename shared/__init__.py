"""Domain code shared by the Cloud Functions in ``functions/``.

Deliberately empty: each function imports only the modules it needs, so a cold
start never pays for the AI SDK or the Tasks client it does not use.
"""
