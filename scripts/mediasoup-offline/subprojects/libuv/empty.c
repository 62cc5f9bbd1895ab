/* Intentionally empty: see meson.build in this folder. */
typedef int trading_room_offline_shim_unused;
