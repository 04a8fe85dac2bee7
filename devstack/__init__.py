"""The local development kit: the stack of emulators and functions (``python -m devstack.stack``), the Cloud
Tasks emulator launcher, the Firebase Auth emulator and a client of its REST API (``auth_emulator``), the web
client's static server (``web_server``), the browser driver of the web client (``browser``: Debian's chromium
through Playwright), and synthetic lesion photos for the demo, the benchmark and the tests."""
