"""Protocol adapters: how devices reach Trellis (MQTT 5 first)."""
