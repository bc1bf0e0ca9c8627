package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/toml/v2"
	"github.com/knadh/koanf/providers/confmap"
	envprovider "github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
	gotoml "github.com/pelletier/go-toml/v2"
)

// Environment variable names (R7.2).
const (
	envPrefix     = "ZRC_"
	envConfigPath = envPrefix + "CONFIG_PATH"
)

// envName is a key's environment variable: listen_port -> ZRC_LISTEN_PORT.
func envName(key string) string { return envPrefix + strings.ToUpper(key) }

// Result is the outcome of Parse: the effective config, where each value
// came from, and the command-line switches that are not config keys.
type Result struct {
	Config Config
	// ConfigPath is the TOML file read, "" when none was named.
	ConfigPath string
	// CheckConfig, Version and Help report --check-config, --version and
	// --help (or -h).
	CheckConfig, Version, Help bool
	// Sources maps every key to where its value came from: "default",
	// "file <path>", "env ZRC_X" or "flag --x".
	Sources map[string]string

	// cmd is the parsed command line, kept so Reload re-applies the same
	// flags. Read-only once parsed.
	cmd cmdline
}

// Parse reads args (without the program name) and the environment through
// getenv, layers defaults < file < env < flags and validates the result.
//
// On error it returns an *Error holding every problem, and still a non-nil
// Result whose CheckConfig, Version and Help reflect the command line. With
// --help or --version the file and environment are not read at all (Config
// holds the defaults), so both work whatever state the config is in; only
// command-line problems are reported then.
//
// getenv returning "" is taken as "not set", so an empty ZRC_X never
// overrides the file; a flag given as "" does (--ip-allowlist "" is an empty
// list).
func Parse(args []string, getenv func(string) string) (*Result, error) {
	return load(parseArgs(args), getenv)
}

// Reload re-reads the file and environment layers for a live reload
// (R5.6) and re-applies prev's command-line flags on top, without parsing
// arguments again. It returns the new Result or an *Error with every
// problem; the caller keeps running on prev in that case. The config path
// is resolved as at start: --config if given, else ZRC_CONFIG_PATH.
func Reload(prev *Result, getenv func(string) string) (*Result, error) {
	var cl cmdline
	if prev != nil {
		cl = prev.cmd
	}
	cl.help, cl.version = false, false
	return load(cl, getenv)
}

// layer holds one source's values, already converted to each key's Go type.
type layer struct {
	values map[string]any
	source func(key string) string
}

func load(cl cmdline, getenv func(string) string) (*Result, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	res := &Result{
		Config:      Defaults(),
		CheckConfig: cl.checkConfig,
		Version:     cl.version,
		Help:        cl.help,
		Sources:     make(map[string]string, len(fields)),
		cmd:         cl,
	}
	for _, f := range fields {
		res.Sources[f.key] = "default"
	}
	probs := slices.Clone(cl.problems)
	if cl.help || cl.version {
		return res, asError(probs)
	}

	layers := []layer{defaultLayer()}

	path, pathSource := cl.configPath, "flag --"+flagConfig
	if !cl.configSet {
		path, pathSource = getenv(envConfigPath), "env "+envConfigPath
	}
	if path != "" {
		res.ConfigPath = path
		l, p := fileLayer(path, pathSource)
		layers = append(layers, l)
		probs = append(probs, p...)
	}

	l, p := envLayer(getenv)
	layers = append(layers, l)
	probs = append(probs, p...)

	l, p = flagLayer(cl)
	layers = append(layers, l)
	probs = append(probs, p...)

	res.Config = merge(layers)
	for _, f := range fields {
		for i := len(layers) - 1; i >= 0; i-- {
			if _, ok := layers[i].values[f.key]; ok {
				res.Sources[f.key] = layers[i].source(f.key)
				break
			}
		}
	}
	probs = append(probs, validate(&res.Config, res.Sources)...)
	return res, asError(probs)
}

func asError(probs []Problem) error {
	if len(probs) == 0 {
		return nil
	}
	return &Error{Problems: probs}
}

func defaultLayer() layer {
	def := Defaults()
	values := make(map[string]any, len(fields))
	for i := range fields {
		values[fields[i].key] = fields[i].get(&def)
	}
	return layer{values: values, source: func(string) string { return "default" }}
}

// fileLayer reads the TOML file through koanf. Unknown keys are problems
// (a typo must not be silently ignored), as is any value of the wrong type.
func fileLayer(path, pathSource string) (layer, []Problem) {
	source := "file " + path
	l := layer{values: map[string]any{}, source: func(string) string { return source }}

	k := koanf.New(".")
	if err := k.Load(file.Provider(path), toml.Parser()); err != nil {
		return l, []Problem{{Key: "config", Source: pathSource, Message: fileError(path, err)}}
	}
	raw := k.Raw()

	var probs []Problem
	unknown := make([]string, 0)
	for name := range raw {
		if _, ok := byKey[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		msg := "unknown key in file " + path
		if s := suggestKey(name); s != "" {
			msg += " (did you mean " + s + "?)"
		}
		probs = append(probs, Problem{Key: displayName(name), Source: source, Message: msg + "; run --help for the known keys"})
	}
	for i := range fields {
		f := &fields[i]
		v, ok := raw[f.key]
		if !ok {
			continue
		}
		val, msg := f.fromTOML(v)
		if msg != "" {
			probs = append(probs, Problem{Key: f.key, Source: source, Message: msg})
			continue
		}
		l.values[f.key] = val
	}
	return l, probs
}

// fileError says why the file could not be used, with the TOML position of
// a syntax error.
func fileError(path string, err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("cannot read file %s: %v", path, pe.Err)
	}
	var de *gotoml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		return fmt.Sprintf("cannot parse file %s as TOML: line %d column %d: %s", path, row, col, strings.TrimPrefix(de.Error(), "toml: "))
	}
	return fmt.Sprintf("cannot parse file %s as TOML: %v", path, err)
}

// suggestKey proposes the key an unknown one was probably meant to be.
func suggestKey(name string) string {
	n := strings.ToLower(strings.ReplaceAll(name, "-", "_"))
	if _, ok := byKey[n]; ok {
		return n
	}
	return ""
}

// envLayer reads ZRC_<KEY> for every key through koanf's env provider. It
// is fed from getenv, which can only look names up, so exactly the known
// keys are asked for; ZRC_ variables for unknown keys are not seen.
func envLayer(getenv func(string) string) (layer, []Problem) {
	l := layer{values: map[string]any{}, source: func(key string) string { return "env " + envName(key) }}
	environ := func() []string {
		var kv []string
		for _, f := range fields {
			if v := getenv(envName(f.key)); v != "" {
				kv = append(kv, envName(f.key)+"="+v)
			}
		}
		return kv
	}
	k := koanf.New(".")
	err := k.Load(envprovider.Provider("", envprovider.Opt{
		Prefix:      envPrefix,
		EnvironFunc: environ,
		TransformFunc: func(name, value string) (string, any) {
			return strings.ToLower(strings.TrimPrefix(name, envPrefix)), value
		},
	}), nil)
	if err != nil {
		panic("BUG: conf: env provider failed: " + err.Error())
	}
	raw := k.Raw()

	var probs []Problem
	for i := range fields {
		f := &fields[i]
		v, ok := raw[f.key].(string)
		if !ok {
			continue
		}
		val, msg := f.fromString(v)
		if msg != "" {
			probs = append(probs, Problem{Key: f.key, Source: l.source(f.key), Message: msg})
			continue
		}
		l.values[f.key] = val
	}
	return l, probs
}

// flagLayer converts the command-line values of config keys.
func flagLayer(cl cmdline) (layer, []Problem) {
	l := layer{values: map[string]any{}, source: flagSource}
	var probs []Problem
	for i := range fields {
		f := &fields[i]
		v, ok := cl.values[f.key]
		if !ok {
			continue
		}
		val, msg := f.fromString(v)
		if msg != "" {
			probs = append(probs, Problem{Key: f.key, Source: flagSource(f.key), Message: msg})
			continue
		}
		l.values[f.key] = val
	}
	return l, probs
}

// merge layers the converted values with koanf, each layer overriding the
// previous, and decodes the result strictly into a Config: every value is
// already of its field's type, so mapstructure only copies, and an unused
// or unset key is a bug in this package.
func merge(layers []layer) Config {
	k := koanf.New(".")
	for _, l := range layers {
		if err := k.Load(confmap.Provider(l.values, ""), nil); err != nil {
			panic("BUG: conf: confmap provider failed: " + err.Error())
		}
	}
	var c Config
	err := k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{
			TagName:          "koanf",
			ErrorUnused:      true,
			ErrorUnset:       true,
			WeaklyTypedInput: false,
		},
	})
	if err != nil {
		panic("BUG: conf: decoding converted values: " + err.Error())
	}
	// Keep lists non-nil whatever the copy and decode steps did with empty
	// ones, so Configs compare equal however they were made.
	for _, p := range []*[]string{&c.IPAllowlist, &c.IPBlocklist, &c.TrustedProxies, &c.AuthTokens} {
		if *p == nil {
			*p = []string{}
		}
	}
	return c
}
