"""The bring-your-own-key layer: provider presets, the OpenAI-compatible client, prices."""
