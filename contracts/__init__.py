"""The bottom layer: what every other package agrees on and nothing else.

The on-disk tables (`schemas`), the event types and what each one means
(`event_types`), the feature columns read by name (`feature_columns`), the
process settings (`settings`), the promotion gates (`promotion`) and the YAML
loader that names a bad key (`yaml_file`). Imports nothing of RecStack's.
"""
