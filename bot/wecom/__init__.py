"""WeChat Work adapters: callback crypto, the outbound API client, a local emulator."""
