// Package config holds mrtd's configuration: the Config and Pool structs,
// their defaults and Validate, the flags of mrtd and mrtd run, and the
// layering of the settings (LoadSettings: flag > MRTD_* environment > TOML
// config file > default). Its I/O is reading the files it is given (the
// config file, an env file, the passwd file) and stat'ing paths.
//
// It imports no mrtd package; cmd/mrtd and daemon import it.
package config
