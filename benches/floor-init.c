/* The floor for startup benchmarks: an init that powers the VM off at once. */
#include <sys/reboot.h>
#include <unistd.h>

int main(void)
{
	reboot(RB_POWER_OFF);
	reboot(RB_AUTOBOOT);
	return 0;
}
