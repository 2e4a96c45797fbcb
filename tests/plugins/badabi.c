/* badabi: a plugin built for an ABI this daemon does not have -- any
 * (built as badabi), or the one before it, 2 (built as abi2, whose
 * descriptor is laid out differently: it must be refused before a field
 * past abi is read). */
#include <wsplugd/plugin.h>

#ifndef BADABI
#define BADABI (WSPLUGD_PLUGIN_ABI + 998)
#endif

WSP_EXPORT const struct wsp_plugin wsplugd_plugin = {
	.abi = BADABI,
	.name = "badabi",
	.version = "1",
};
