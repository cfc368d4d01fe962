// Package kernelconfig holds the kernel .config fragments the boards are
// built from (embedded from this directory), merges them, compares a
// resolved .config with what was asked for, and checks any kernel's
// config against requirement sets (lxc, netfilter, btrfs, a board).
//
// Fragment files use the kernel's own syntax
//
//	CONFIG_X=y | m | "string" | 123
//	# CONFIG_X is not set
//
// plus marker comments that say how much a setting matters. A marker
// applies to every setting after it until the next marker:
//
//	# @required  the setting must survive Kconfig resolution; losing it
//	             is an error (this is the default at the top of a file)
//	# @optional  wanted, but may be missing on some kernels (renamed or
//	             removed symbols, compiler features); losing it is a note
//	# @builtin   like @required, and "kconfig check" accepts only =y,
//	             not =m, for a wanted y
//
// Resolution is exact (a requested y that became m is lost); checks are
// lenient (m satisfies an enabled requirement unless @builtin).
package kernelconfig
