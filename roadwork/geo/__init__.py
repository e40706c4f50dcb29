"""GPS for predictions: tracks (GPX, CSV), EXIF positions, work zones as GeoJSON and an offline map."""

from roadwork.geo.track import GeoError, Track, photo_position, read_track
from roadwork.geo.zones import GeoCollector

__all__ = ["GeoCollector", "GeoError", "Track", "photo_position", "read_track"]
