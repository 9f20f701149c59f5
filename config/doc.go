// Package config holds mrtd's configuration: the Config struct, its
// defaults, and Validate. It parses no flags and does no I/O beyond stat'ing
// the paths it is given.
package config
