package jwtguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "jwtguard",
		Usage: "<revoke|list|unrevoke|usage|events|cluster|sign> [flags]",
		Short: "Manages jwtguard's revocation list and signs test tokens",
		Long: `
Commands for jwtguard, the JWT guard for Caddy.

  revoke    revokes a token, a token id, a subject, a signing key or a session
  list      lists revocations
  unrevoke  removes a revocation
  usage     shows where and how a token or subject was used
  events    lists what the detectors found
  cluster   shows the state of the cluster link
  sign      prints an HS256 token, for trying a guard out locally

All but sign talk to a running Caddy's admin API at --address
(default: ` + caddy.DefaultAdminListen + `).`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(revokeCommand(), listCommand(), unrevokeCommand(), signCommand(), usageCommand(), eventsCommand(), clusterCommand())
		},
	})
}

// registeredByFlag are the claims sign sets from its own flags.
var registeredByFlag = map[string]string{"sub": "--sub", "iss": "--iss", "aud": "--aud", "exp": "--ttl", "iat": "--ttl"}

func signCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sign --secret S --sub SUB [--ttl 1h] [--iss ISS] [--aud AUD] [--kid KID] [--claim k=v ...]",
		Short: "Prints an HS256 token signed with a secret",
		Long: `Prints an HS256 token, for trying a guard out locally: iat is now and exp
is now + --ttl. Each --claim value is parsed as JSON when it is valid JSON
(--claim admin=true, --claim roles='["a","b"]'), else taken as a string.
The secret is read like the Caddyfile's secret: its UTF-8 bytes, or
base64:<b64>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			secret, _ := fl.GetString("secret")
			sub, _ := fl.GetString("sub")
			ttl, _ := fl.GetDuration("ttl")
			iss, _ := fl.GetString("iss")
			aud, _ := fl.GetString("aud")
			kid, _ := fl.GetString("kid")
			extra, _ := fl.GetStringArray("claim")
			tok, err := signToken(secret, sub, iss, aud, kid, ttl, extra, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.String("secret", "", "HMAC secret, at least 32 bytes (or base64:<b64>)")
	fl.String("sub", "", "subject (sub claim)")
	fl.Duration("ttl", time.Hour, "lifetime: exp = now + ttl")
	fl.String("iss", "", "issuer (iss claim)")
	fl.String("aud", "", "audience (aud claim)")
	fl.String("kid", "", "key id (kid header)")
	fl.StringArray("claim", nil, "extra claim as name=value; repeatable")
	return cmd
}

func signToken(secret, sub, iss, aud, kid string, ttl time.Duration, extra []string, now time.Time) (string, error) {
	if secret == "" || sub == "" {
		return "", errors.New("--secret and --sub are required")
	}
	if ttl <= 0 {
		return "", errors.New("--ttl must be more than 0")
	}
	key, err := verifier.DecodeSecret(secret)
	if err != nil {
		return "", err
	}
	if _, err := verifier.NewHMACKey(key); err != nil {
		return "", fmt.Errorf("--secret: %v", err)
	}
	claims := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if iss != "" {
		claims["iss"] = iss
	}
	if aud != "" {
		claims["aud"] = aud
	}
	for _, kv := range extra {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return "", fmt.Errorf("--claim %q: want name=value", kv)
		}
		if flag, ok := registeredByFlag[name]; ok {
			return "", fmt.Errorf("--claim %s: set it with %s", name, flag)
		}
		var v any = value
		if json.Valid([]byte(value)) {
			v = json.RawMessage(value)
		}
		claims[name] = v
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	return t.SignedString(key)
}
