/* badabi: a plugin built for an ABI this daemon does not have. */
#include <wsplugd/plugin.h>

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = WSPLUGD_PLUGIN_ABI + 998,
	.name = "badabi",
	.version = "1",
};
