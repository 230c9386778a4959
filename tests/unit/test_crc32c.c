// SPDX-License-Identifier: MIT
/* crc32c: known check values, chaining, and hardware == table path at every alignment/length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vmm/lib/crc32c.h"

static void test_check_value(void **unused)
{
	static const char s[] = "123456789";
	uint8_t zeros[32] = { 0 }, ones[32];

	assert_int_equal(crc32c(0, s, 9), 0xE3069283u);
	assert_int_equal(crc32c_sw(0, s, 9), 0xE3069283u);
	assert_int_equal(crc32c(0, NULL, 0), 0);
	/* RFC 3720 B.4 test vectors: 32 bytes of 0x00 and of 0xff. */
	memset(ones, 0xff, sizeof(ones));
	assert_int_equal(crc32c(0, zeros, 32), 0x8A9136AAu);
	assert_int_equal(crc32c(0, ones, 32), 0x62A8AB43u);
	assert_int_equal(crc32c_sw(0, ones, 32), 0x62A8AB43u);
}

static void test_chaining_and_paths_agree(void **unused)
{
	uint8_t buf[300];
	size_t off, len, i;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (off = 0; off < 9; off++) {
		for (len = 0; len + off <= sizeof(buf); len += 7) {
			uint32_t whole = crc32c(0, buf + off, len);
			size_t cut = len / 3;

			assert_int_equal(whole, crc32c_sw(0, buf + off, len));
			assert_int_equal(whole, crc32c(crc32c(0, buf + off, cut), buf + off + cut, len - cut));
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_value),
		cmocka_unit_test(test_chaining_and_paths_agree),
	};
	return cmocka_run_group_tests_name("crc32c", tests, NULL, NULL);
}
