"""Packaged mmengine recipes (``polyhead.configs``); ``_base_/`` holds shared sections."""
