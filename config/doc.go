// Package config loads falbridge's one typed Config with koanf: defaults, then
// a YAML file, then FALBRIDGE_* environment variables (and FAL_KEY), then
// command-line flags. Unknown keys and invalid values are errors that name the key.
package config
