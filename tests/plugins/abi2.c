/* abi2: a plugin built against the previous ABI, before the bus calls
 * were added to the host table; the daemon refuses it. */
#include <wsplugd/plugin.h>

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = 2,
	.name = "abi2",
	.version = "1",
};
