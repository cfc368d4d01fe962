// Package registryauth finds the build host's registry logins where
// docker login put them: the Docker config file's auths, and the
// credential helpers it names (credHelpers per registry, credsStore for
// all), run as docker-credential-NAME get. Nodes do not use it: they
// have no Docker config.
package registryauth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/mkimage/mkimage/internal/update/registry"
)

// config is what this package reads of a Docker config.json.
type config struct {
	Auths map[string]struct {
		Auth          string `json:"auth"`
		Username      string `json:"username"`
		Password      string `json:"password"`
		IdentityToken string `json:"identitytoken"`
	} `json:"auths"`
	CredHelpers map[string]string `json:"credHelpers"`
	CredsStore  string            `json:"credsStore"`
}

// DefaultPath is where docker keeps its config: $DOCKER_CONFIG/config.json,
// else ~/.docker/config.json.
func DefaultPath() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

// Docker returns the credentials the Docker config at path ("":
// DefaultPath) gives each registry host; a host it does not name, or a
// missing default config, is anonymous.
func Docker(path string) (registry.Credentials, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultPath()
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return func(string) (string, string, error) { return "", "", nil }, nil
	}
	if err != nil {
		return nil, fmt.Errorf("docker config: %w", err)
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("docker config %s: %w (fix the file, or point --docker-config at another)", path, err)
	}
	return func(host string) (string, string, error) { return c.lookup(path, host) }, nil
}

// lookup follows docker's order: the host's helper, else the store, else
// the file's own auths.
func (c *config) lookup(path, host string) (string, string, error) {
	if h := c.CredHelpers[host]; h != "" {
		return helper(h, host)
	}
	if c.CredsStore != "" {
		u, s, err := helper(c.CredsStore, host)
		if err != nil || u != "" || s != "" {
			return u, s, err
		}
	}
	for key, a := range c.Auths {
		if serverHost(key) != host {
			continue
		}
		if a.IdentityToken != "" {
			return "", "", fmt.Errorf("%s: the login for %s is an identity token (OAuth2), which mkimage does not use: log in with a user and password or token", path, host)
		}
		if a.Auth == "" {
			return a.Username, a.Password, nil
		}
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("%s: auths[%q].auth is not base64: %w", path, key, err)
		}
		u, s, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "", fmt.Errorf("%s: auths[%q].auth is not base64 of user:secret", path, key)
		}
		return u, s, nil
	}
	return "", "", nil
}

// serverHost is the host of an auths key, which docker writes as
// "host", "https://host" or "https://host/v1/".
func serverHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	host, _, _ := strings.Cut(key, "/")
	return host
}

// helper runs docker-credential-NAME get for host, as docker does: the
// server on stdin, JSON with Username and Secret on stdout. Its "not
// found" is anonymous access.
func helper(name, host string) (string, string, error) {
	bin := "docker-credential-" + name
	cmd := exec.Command(bin, "get")
	cmd.Stdin = strings.NewReader(host)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String() + errOut.String())
		if strings.Contains(strings.ToLower(msg), "credentials not found") {
			return "", "", nil
		}
		return "", "", fmt.Errorf("%s get (the credential helper the docker config names for %s): %w: %s", bin, host, err, msg)
	}
	var r struct{ Username, Secret string }
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return "", "", fmt.Errorf("%s get: its answer is not JSON with Username and Secret: %w", bin, err)
	}
	return r.Username, r.Secret, nil
}
