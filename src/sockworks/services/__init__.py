"""The services: echo, key-value (text and RESP), UDP JSON, multicast."""
