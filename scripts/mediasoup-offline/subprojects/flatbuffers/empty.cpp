// Intentionally empty: see meson.build in this folder.
namespace trading_room_offline_shim {}
