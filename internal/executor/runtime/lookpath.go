package runtime

import "strings"

// LookPath finds a command as a container would: on the PATH of the
// container's environment (env), not the executor's; a name with a slash
// is taken as it is.
func LookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	return lookPath(file, env)
}
