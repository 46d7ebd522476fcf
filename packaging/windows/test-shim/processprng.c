/* A stand-in bcryptprimitives.dll for running loupe.exe under Wine 8 in tests. NEVER SHIPPED.
 *
 * Rust's standard library (1.78 and later) gets random bytes from ProcessPrng in
 * bcryptprimitives.dll, which every supported Windows has but Wine 8 lacks, so any Rust
 * program stops at start-up there. This DLL exports ProcessPrng and forwards to
 * BCryptGenRandom with the system RNG, which Wine implements. Placed next to loupe.exe it is
 * found before the (missing) system one. Built by build.sh beside this file. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* BCryptGenRandom takes a ULONG length: hand larger requests over in pieces. */
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
