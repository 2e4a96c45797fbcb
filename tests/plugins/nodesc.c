/* nodesc: a shared object that is not a wsplugd plugin at all. */
int nodesc_answer(void);

int
nodesc_answer(void)
{
	return 42;
}
