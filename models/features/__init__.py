"""Feature building: the tables behind the Feast feature views."""
