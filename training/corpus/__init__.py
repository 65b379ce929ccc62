"""Offline spoof-corpus builder: TTS engines, copy-synthesis vocoders, Lyra codec, splits."""
