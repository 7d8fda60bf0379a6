"""Entry point for the plain `feast` CLI (`feast -c feature_repo apply`).

Feast imports every Python file of the repo; this one builds RecStack's objects
for the data directory named by RECSTACK_DATA_DIR (default `data`).
"""

import os
from pathlib import Path

from feature_repo.definitions import build_definitions

_definitions = build_definitions(Path(os.environ.get("RECSTACK_DATA_DIR", "data")))
user = _definitions.user
item = _definitions.item
user_realtime_push = _definitions.push_source
user_activity = _definitions.views["user_activity"]
user_profile = _definitions.views["user_profile"]
user_realtime = _definitions.views["user_realtime"]
item_popularity = _definitions.views["item_popularity"]
item_content = _definitions.views["item_content"]
user_online = _definitions.services["user_online"]
item_online = _definitions.services["item_online"]
two_tower = _definitions.services["two_tower"]
ranker = _definitions.services["ranker"]
