package conf

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// cmdline is the parsed command line. It is kept in a Result so a reload
// re-applies the same flags on top of a re-read file and environment
// without parsing the arguments again.
type cmdline struct {
	// values maps config key to the raw flag value (lists accumulated
	// over repeated flags).
	values map[string]string

	configPath  string
	configSet   bool // --config was given, even as ""
	checkConfig bool
	version     bool
	help        bool

	problems []Problem
}

// Flag names of the control flags, which are not config keys.
const (
	flagConfig      = "config"
	flagCheckConfig = "check-config"
	flagVersion     = "version"
	flagHelp        = "help"
)

// flagName is a config key's flag name: listen_port -> listen-port.
func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// flagSource is the Source text of a value set by a key's flag.
func flagSource(key string) string { return "flag --" + flagName(key) }

// keyForFlag maps a flag name to its config key, if it names one.
var keyForFlag = func() map[string]string {
	m := make(map[string]string, len(fields))
	for _, f := range fields {
		m[flagName(f.key)] = f.key
	}
	return m
}()

// parseArgs parses args the way Go's flag package does (-name or --name,
// value as "=value" or the next argument, booleans without a value), but
// it keeps going after a problem so that every one is reported at once,
// and it leaves value conversion to the per-key converters.
func parseArgs(args []string) cmdline {
	cl := cmdline{values: map[string]string{}}
	bad := func(key, source, format string, a ...any) {
		cl.problems = append(cl.problems, Problem{Key: key, Source: source, Message: fmt.Sprintf(format, a...)})
	}
	// lastBare is the previous argument when it was a boolean flag without
	// a value, to explain "--metrics-enabled false".
	lastBare := ""
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			for _, rest := range args[i+1:] {
				bad("args", "command line", "unexpected argument %s; settings are given as --name value", quoteTrunc(rest))
			}
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			hint := "settings are given as --name value"
			if lastBare != "" {
				hint = "a boolean flag takes its value after =, as in --" + lastBare + "=" + displayName(arg)
			}
			bad("args", "command line", "unexpected argument %s; %s", quoteTrunc(arg), hint)
			lastBare = ""
			continue
		}
		lastBare = ""
		name := strings.TrimPrefix(arg[1:], "-")
		name, value, hasValue := strings.Cut(name, "=")
		if name == "" {
			bad("args", "command line", "unexpected argument %s; settings are given as --name value", quoteTrunc(arg))
			continue
		}
		source := "flag --" + name

		key, isKey := keyForFlag[name]
		isBool := isKey && byKey[key].kind == kindBool
		switch name {
		case flagCheckConfig, flagVersion, flagHelp, "h":
			isBool = true
		case flagConfig:
		default:
			if !isKey {
				shown := displayName(name)
				bad(shown, "flag --"+shown, "unknown flag --%s%s; run --help for the list", shown, suggest(name))
				// Swallow a value that most likely belongs to the unknown
				// flag, so it is not reported a second time.
				if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
					i++
				}
				continue
			}
		}

		if !hasValue {
			if isBool {
				value = "true"
				lastBare = displayName(name)
			} else if i+1 < len(args) {
				i++
				value = args[i]
			} else {
				bad(flagKey(name), source, "needs a value: --%s <value>", name)
				continue
			}
		}

		switch name {
		case flagConfig:
			cl.configPath, cl.configSet = value, true
			continue
		case flagCheckConfig, flagVersion, flagHelp, "h":
			b, err := strconv.ParseBool(value)
			if err != nil {
				bad(name, source, "must be true or false, got %s", quoteTrunc(value))
				continue
			}
			switch name {
			case flagCheckConfig:
				cl.checkConfig = b
			case flagVersion:
				cl.version = b
			default:
				cl.help = b
			}
			continue
		}
		if prev, ok := cl.values[key]; ok && byKey[key].kind == kindList && prev != "" && value != "" {
			// Repeated list flags accumulate: --ip-allowlist a --ip-allowlist b.
			value = prev + "," + value
		}
		cl.values[key] = value
	}
	return cl
}

// displayName shows a name taken from the user's input as a Problem key:
// as is when it looks like a name, quoted otherwise, so that an empty or
// multi-line name still makes one readable line.
func displayName(name string) string {
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return quoteTrunc(name)
		}
	}
	if name == "" {
		return `""`
	}
	return name
}

// flagKey is the Problem key for a flag: its config key, or its own name.
func flagKey(name string) string {
	if key, ok := keyForFlag[name]; ok {
		return key
	}
	return name
}

// suggest proposes the flag an unknown one was probably meant to be.
func suggest(name string) string {
	n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	if _, ok := keyForFlag[n]; ok && n != name {
		return " (did you mean --" + n + "?)"
	}
	return ""
}

// Usage writes the --help text: every flag with its default and a
// one-line description.
func Usage(w io.Writer) {
	fmt.Fprint(w, `Usage: zrc-rendezvous [flags]

zrc-rendezvous is an HTTP mailbox server. Each setting comes from, in rising
priority: its built-in default, the TOML file (key = value), the environment
(ZRC_<KEY>, e.g. ZRC_LISTEN_PORT; lists comma-separated) and its flag.

Flags:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  --config PATH\tTOML config file (or env ZRC_CONFIG_PATH)")
	fmt.Fprintln(tw, "  --check-config\tvalidate, print the effective config as TOML with secrets redacted, exit 0 (valid) or 2")
	fmt.Fprintln(tw, "  --version\tprint the version and exit")
	fmt.Fprintln(tw, "  -h, --help\tprint this help and exit")
	tw.Flush()

	fmt.Fprint(w, "\nSettings (flag --<key-with-dashes>, env ZRC_<KEY>, file <key>):\n")
	def := Defaults()
	for i := range fields {
		f := &fields[i]
		help := f.help
		if len(f.oneOf) > 0 {
			help += ": " + strings.Join(f.oneOf, ", ")
		}
		fmt.Fprintf(tw, "  --%s%s\t%s (default %s)\n", flagName(f.key), argName(f), help, defaultText(f, &def))
	}
	tw.Flush()
}

// argName names a flag's value in --help.
func argName(f *field) string {
	switch f.kind {
	case kindInt, kindInt64:
		return " int"
	case kindBool:
		return "[=bool]"
	case kindList:
		return " list"
	}
	return " string"
}

func defaultText(f *field, c *Config) string {
	switch v := f.get(c).(type) {
	case string:
		return strconv.Quote(v)
	case []string:
		return "[" + strings.Join(v, ",") + "]"
	default:
		return fmt.Sprint(v)
	}
}
