/*
 * libsrtp 3 API (the subset mediasoup's worker uses) on top of libsrtp 2.
 *
 * Part of the offline mediasoup worker build (scripts/setup-mediasoup-worker.sh,
 * docs/mediasoup-offline-build.md). mediasoup 3.2x pins a libsrtp 3.0.0 beta commit that
 * is downloaded from GitHub; on a machine without internet the worker is compiled against
 * Debian's libsrtp2-dev (2.5) instead, and this header, found first as <srtp.h> on the
 * libsrtp3 subproject's include path, adapts the differences:
 *
 * - srtp_protect / srtp_unprotect / srtp_protect_rtcp / srtp_unprotect_rtcp take separate
 *   input and output buffers with size_t lengths in v3; v2 works in place with int lengths.
 *   The adapter copies the input into the output buffer (unless they are the same buffer)
 *   and calls v2 in place, after checking that the output has room for the trailer (v3's
 *   srtp_err_status_buffer_small otherwise).
 * - srtp_stream_remove is v2's srtp_remove_stream.
 * - v3 adds the error codes srtp_err_status_buffer_small (28) and
 *   srtp_err_status_cryptex_err (29).
 * - v3's srtp_policy_t is an opaque object configured through srtp_policy_* functions; v2's
 *   is a plain struct. The v2 struct is renamed while its header is included, and wrapped.
 *
 * C++ only (mediasoup's worker is C++): the v3 functions are inline C++ overloads of the v2
 * C functions of the same name, with different parameter lists.
 */

#ifndef TRADING_ROOM_SRTP3_OVER_SRTP2_H
#define TRADING_ROOM_SRTP3_OVER_SRTP2_H

#ifndef __cplusplus
#error "this libsrtp 3 adapter header is C++ only"
#endif

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

// Rename v2's policy struct so that srtp_policy_t can be v3's opaque handle below.
#define srtp_policy_t srtp2_policy_t
#include <srtp2/srtp.h>
#undef srtp_policy_t

/* Error codes added in libsrtp 3 (v2 stops at srtp_err_status_pkt_idx_adv = 27). */
inline constexpr srtp_err_status_t srtp_err_status_buffer_small =
  static_cast<srtp_err_status_t>(28);
inline constexpr srtp_err_status_t srtp_err_status_cryptex_err =
  static_cast<srtp_err_status_t>(29);

/* Opaque policy object of libsrtp 3, wrapping a v2 policy and the key material it points to. */
struct srtp_policy_ctx_t_
{
	srtp2_policy_t policy;
	// v2 wants the master key immediately followed by the master salt, in a buffer that
	// outlives the srtp_create() call.
	unsigned char keyAndSalt[SRTP_MAX_KEY_LEN];
	bool hasKey;
};

typedef struct srtp_policy_ctx_t_* srtp_policy_t;

namespace trading_room_srtp3_adapter
{
	inline void wipe(void* p, std::size_t n)
	{
		volatile unsigned char* b = static_cast<volatile unsigned char*>(p);

		while (n--)
		{
			*b++ = 0;
		}
	}

	// Copies |in| into |out| (when distinct) and runs a v2 in-place function over it.
	template<typename V2Fn>
	inline srtp_err_status_t inPlace(
	  V2Fn fn,
	  srtp_t ctx,
	  const std::uint8_t* in,
	  std::size_t inLen,
	  std::uint8_t* out,
	  std::size_t* outLen,
	  std::size_t room)
	{
		if (!ctx || !in || !out || !outLen)
		{
			return srtp_err_status_bad_param;
		}

		if (inLen > static_cast<std::size_t>(INT_MAX) - room)
		{
			return srtp_err_status_bad_param;
		}

		if (*outLen < inLen + room)
		{
			return srtp_err_status_buffer_small;
		}

		if (out != in)
		{
			std::memmove(out, in, inLen);
		}

		int len = static_cast<int>(inLen);
		const srtp_err_status_t err = fn(ctx, out, &len);

		if (err == srtp_err_status_ok)
		{
			*outLen = static_cast<std::size_t>(len);
		}

		return err;
	}
} // namespace trading_room_srtp3_adapter

/* Policy. */

inline srtp_err_status_t srtp_policy_create(srtp_policy_t* policy)
{
	if (!policy)
	{
		return srtp_err_status_bad_param;
	}

	auto* p = new (std::nothrow) srtp_policy_ctx_t_();

	if (!p)
	{
		return srtp_err_status_alloc_fail;
	}

	std::memset(std::addressof(p->policy), 0, sizeof(p->policy));
	p->policy.ssrc.type = ssrc_undefined;
	p->policy.key       = p->keyAndSalt;
	p->policy.next      = nullptr;
	p->hasKey           = false;
	*policy             = p;

	return srtp_err_status_ok;
}

inline void srtp_policy_destroy(srtp_policy_t policy)
{
	if (!policy)
	{
		return;
	}

	trading_room_srtp3_adapter::wipe(policy->keyAndSalt, sizeof(policy->keyAndSalt));
	delete policy;
}

inline srtp_err_status_t srtp_policy_set_ssrc(srtp_policy_t policy, srtp_ssrc_t ssrc)
{
	if (!policy)
	{
		return srtp_err_status_bad_param;
	}

	policy->policy.ssrc = ssrc;

	return srtp_err_status_ok;
}

inline srtp_err_status_t srtp_policy_set_profile(srtp_policy_t policy, srtp_profile_t profile)
{
	if (!policy)
	{
		return srtp_err_status_bad_param;
	}

	srtp_err_status_t err =
	  srtp_crypto_policy_set_from_profile_for_rtp(std::addressof(policy->policy.rtp), profile);

	if (err != srtp_err_status_ok)
	{
		return err;
	}

	return srtp_crypto_policy_set_from_profile_for_rtcp(std::addressof(policy->policy.rtcp), profile);
}

inline srtp_err_status_t srtp_policy_add_key(
  srtp_policy_t policy,
  const std::uint8_t* key,
  std::size_t keyLen,
  const std::uint8_t* salt,
  std::size_t saltLen,
  const std::uint8_t* /*mki*/,
  std::size_t mkiLen)
{
	// One master key, no MKI: all mediasoup uses, and all v2's plain |key| field carries.
	if (!policy || !key || (saltLen > 0 && !salt) || mkiLen != 0 || policy->hasKey)
	{
		return srtp_err_status_bad_param;
	}

	if (keyLen > sizeof(policy->keyAndSalt) || saltLen > sizeof(policy->keyAndSalt) - keyLen)
	{
		return srtp_err_status_bad_param;
	}

	std::memcpy(policy->keyAndSalt, key, keyLen);

	if (saltLen > 0)
	{
		std::memcpy(policy->keyAndSalt + keyLen, salt, saltLen);
	}

	policy->hasKey = true;

	return srtp_err_status_ok;
}

inline srtp_err_status_t srtp_policy_set_allow_repeat_tx(srtp_policy_t policy, bool allow)
{
	if (!policy)
	{
		return srtp_err_status_bad_param;
	}

	policy->policy.allow_repeat_tx = allow ? 1 : 0;

	return srtp_err_status_ok;
}

inline srtp_err_status_t srtp_policy_set_window_size(srtp_policy_t policy, std::size_t windowSize)
{
	if (!policy)
	{
		return srtp_err_status_bad_param;
	}

	policy->policy.window_size = static_cast<unsigned long>(windowSize);

	return srtp_err_status_ok;
}

/* Session. */

inline srtp_err_status_t srtp_create(srtp_t* session, const srtp_policy_ctx_t_* policy)
{
	if (!session || !policy || !policy->hasKey)
	{
		return srtp_err_status_bad_param;
	}

	// v2 reads the policy (and key) only during the call; session keys are derived from it.
	srtp2_policy_t v2 = policy->policy;

	v2.next = nullptr;

	return ::srtp_create(session, std::addressof(v2));
}

inline srtp_err_status_t srtp_stream_remove(srtp_t session, std::uint32_t ssrc)
{
	return srtp_remove_stream(session, ssrc);
}

/* Packet protection. */

inline srtp_err_status_t srtp_protect(
  srtp_t ctx,
  const std::uint8_t* rtp,
  std::size_t rtpLen,
  std::uint8_t* srtp,
  std::size_t* srtpLen,
  std::size_t /*mkiIndex*/)
{
	return trading_room_srtp3_adapter::inPlace(
	  [](srtp_t c, void* b, int* l) { return srtp_protect(c, b, l); },
	  ctx,
	  rtp,
	  rtpLen,
	  srtp,
	  srtpLen,
	  SRTP_MAX_TRAILER_LEN);
}

inline srtp_err_status_t srtp_unprotect(
  srtp_t ctx, const std::uint8_t* srtp, std::size_t srtpLen, std::uint8_t* rtp, std::size_t* rtpLen)
{
	return trading_room_srtp3_adapter::inPlace(
	  [](srtp_t c, void* b, int* l) { return srtp_unprotect(c, b, l); },
	  ctx,
	  srtp,
	  srtpLen,
	  rtp,
	  rtpLen,
	  0);
}

inline srtp_err_status_t srtp_protect_rtcp(
  srtp_t ctx,
  const std::uint8_t* rtcp,
  std::size_t rtcpLen,
  std::uint8_t* srtcp,
  std::size_t* srtcpLen,
  std::size_t /*mkiIndex*/)
{
	// SRTCP adds the 4-byte E-flag/index word besides the authentication tag.
	return trading_room_srtp3_adapter::inPlace(
	  [](srtp_t c, void* b, int* l) { return srtp_protect_rtcp(c, b, l); },
	  ctx,
	  rtcp,
	  rtcpLen,
	  srtcp,
	  srtcpLen,
	  SRTP_MAX_TRAILER_LEN + 4);
}

inline srtp_err_status_t srtp_unprotect_rtcp(
  srtp_t ctx, const std::uint8_t* srtcp, std::size_t srtcpLen, std::uint8_t* rtcp, std::size_t* rtcpLen)
{
	return trading_room_srtp3_adapter::inPlace(
	  [](srtp_t c, void* b, int* l) { return srtp_unprotect_rtcp(c, b, l); },
	  ctx,
	  srtcp,
	  srtcpLen,
	  rtcp,
	  rtcpLen,
	  0);
}

#endif /* TRADING_ROOM_SRTP3_OVER_SRTP2_H */
