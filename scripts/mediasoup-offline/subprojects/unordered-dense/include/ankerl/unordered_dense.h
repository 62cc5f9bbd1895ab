// Substitute for ankerl::unordered_dense 4.8.1 (https://github.com/martinus/unordered_dense),
// for the offline mediasoup worker build only (scripts/setup-mediasoup-worker.sh,
// docs/mediasoup-offline-build.md).
//
// The real library is a header-only, open-addressing hash map/set with its values stored
// contiguously (a std::vector) and Robin Hood buckets. It is not packaged by Debian or npm, and
// mediasoup downloads it from GitHub. This header keeps the names and template parameter lists
// mediasoup uses and maps them onto std::unordered_map / std::unordered_set:
//
// - Same observable behaviour for mediasoup's use (lookup, insert, erase, iteration; mediasoup
//   does not rely on iteration order, which the real library keeps as insertion order).
// - Slower: node-based buckets, a heap allocation per element, pointer chasing on lookup.
// - Extra template parameters (allocator-or-container, bucket type, bucket container) are
//   accepted and ignored; API beyond std's (values(), extract() of the whole vector, replace(),
//   nth(), ...) is not provided: a worker using it fails to compile here, loudly.
//
// The official prebuilt worker and mediasoup's own build use the real library.

#ifndef TRADING_ROOM_ANKERL_UNORDERED_DENSE_SUBSTITUTE_H
#define TRADING_ROOM_ANKERL_UNORDERED_DENSE_SUBSTITUTE_H

#define ANKERL_UNORDERED_DENSE_VERSION_MAJOR 4
#define ANKERL_UNORDERED_DENSE_VERSION_MINOR 8
#define ANKERL_UNORDERED_DENSE_VERSION_PATCH 1
// Not the real library: lets code tell the two apart if it ever needs to.
#define TRADING_ROOM_ANKERL_UNORDERED_DENSE_IS_STD_SUBSTITUTE 1

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace ankerl::unordered_dense
{
	inline namespace v4_8_1
	{
		namespace detail
		{
			// splitmix64 finalizer: spreads std::hash's identity hashes of integers and pointers
			// over all bits, like the real library's wyhash-based mixing.
			constexpr std::uint64_t mix(std::uint64_t x) noexcept
			{
				x ^= x >> 30U;
				x *= UINT64_C(0xbf58476d1ce4e5b9);
				x ^= x >> 27U;
				x *= UINT64_C(0x94d049bb133111eb);
				x ^= x >> 31U;

				return x;
			}

			// Placeholder for the real library's default bucket container parameter.
			struct default_container_t
			{
			};
		} // namespace detail

		// Hash functor. Declares is_avalanching like the real library's specializations do.
		template<typename T, typename Enable = void>
		struct hash
		{
			using is_avalanching = void;

			auto operator()(const T& obj) const noexcept(noexcept(std::hash<T>{}(obj))) -> std::uint64_t
			{
				return detail::mix(static_cast<std::uint64_t>(std::hash<T>{}(obj)));
			}
		};

		namespace bucket_type
		{
			struct standard
			{
				static constexpr std::uint32_t dist_inc         = 1U << 8U;
				static constexpr std::uint32_t fingerprint_mask = dist_inc - 1;

				std::uint32_t m_dist_and_fingerprint;
				std::uint32_t m_value_idx;
			};

			struct big
			{
				static constexpr std::uint32_t dist_inc         = 1U << 8U;
				static constexpr std::uint32_t fingerprint_mask = dist_inc - 1;

				std::uint32_t m_dist_and_fingerprint;
				std::size_t m_value_idx;
			};
		} // namespace bucket_type

		template<
		  class Key,
		  class T,
		  class Hash                 = hash<Key>,
		  class KeyEqual             = std::equal_to<Key>,
		  class AllocatorOrContainer = std::allocator<std::pair<Key, T>>,
		  class Bucket               = bucket_type::standard,
		  class BucketContainer      = detail::default_container_t>
		using map = std::unordered_map<Key, T, Hash, KeyEqual>;

		template<
		  class Key,
		  class T,
		  class Hash                 = hash<Key>,
		  class KeyEqual             = std::equal_to<Key>,
		  class AllocatorOrContainer = std::allocator<std::pair<Key, T>>,
		  class Bucket               = bucket_type::standard,
		  class BucketContainer      = detail::default_container_t>
		using segmented_map = std::unordered_map<Key, T, Hash, KeyEqual>;

		template<
		  class Key,
		  class Hash                 = hash<Key>,
		  class KeyEqual             = std::equal_to<Key>,
		  class AllocatorOrContainer = std::allocator<Key>,
		  class Bucket               = bucket_type::standard,
		  class BucketContainer      = detail::default_container_t>
		using set = std::unordered_set<Key, Hash, KeyEqual>;

		template<
		  class Key,
		  class Hash                 = hash<Key>,
		  class KeyEqual             = std::equal_to<Key>,
		  class AllocatorOrContainer = std::allocator<Key>,
		  class Bucket               = bucket_type::standard,
		  class BucketContainer      = detail::default_container_t>
		using segmented_set = std::unordered_set<Key, Hash, KeyEqual>;
	} // namespace v4_8_1
} // namespace ankerl::unordered_dense

#endif // TRADING_ROOM_ANKERL_UNORDERED_DENSE_SUBSTITUTE_H
