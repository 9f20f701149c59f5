// Package config holds mrtd's configuration: the Config and Pool structs,
// their defaults, Validate, and the TOML config file. It parses no flags;
// its I/O is reading the files it is given (the config file, an env file,
// the passwd file) and stat'ing paths.
package config
