package jwtguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

func addressFlag(cmd *cobra.Command) {
	cmd.Flags().String("address", "", "admin API address (default: the running config's, or localhost:2019)")
}

func revokeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke (--jti ID [--iss ISS] | --token JWT | --sub SUB [--iss ISS] [--before TIME] | --kid KID | --sid SID [--iss ISS]) [--reason TEXT] [--expires TIME]",
		Short: "Revokes a token, a subject's tokens, a signing key or a session",
		Long: `Adds an entry to the revocation list of a running Caddy and prints it as
JSON. The very next request with a matching token is refused.

  --jti ID [--iss ISS]         the token with this jti (from this issuer)
  --token JWT                  this token (the entry expires with it)
  --sub SUB [--iss ISS] [--before TIME]
                               every token of this subject issued before TIME
                               (default: now): "log out everywhere"
  --kid KID                    every token whose header names this key
  --sid SID [--iss ISS]        every token of the identity provider's session
                               SID (the sid claim): "log out this session"

Times are RFC 3339 (2026-01-02T15:04:05Z).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			body := map[string]string{}
			for flag, field := range map[string]string{"jti": "jti", "iss": "iss", "token": "token", "sub": "sub",
				"before": "before", "kid": "kid", "sid": "sid", "reason": "reason", "expires": "expires_at"} {
				if cmd.Flags().Changed(flag) {
					body[field], _ = cmd.Flags().GetString(flag)
				}
			}
			if body["jti"] == "" && body["token"] == "" && body["sub"] == "" && body["kid"] == "" && body["sid"] == "" {
				return errors.New("say what to revoke: --jti, --token, --sub, --kid or --sid")
			}
			data, _ := json.Marshal(body)
			out, err := adminCall(cmd, http.MethodPost, revocationsPath, data)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	fl := cmd.Flags()
	for _, f := range []struct{ name, usage string }{
		{"jti", "token id (jti claim)"}, {"iss", "issuer, with --jti, --sub or --sid"}, {"token", "the token itself"},
		{"sub", "subject"}, {"before", "with --sub: tokens issued before this time (default now)"},
		{"kid", "signing key id"}, {"sid", "session id (sid claim)"}, {"reason", "why, for the record"}, {"expires", "when the entry may be dropped"},
	} {
		fl.String(f.name, "", f.usage)
	}
	addressFlag(cmd)
	return cmd
}

func unrevokeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "unrevoke ID",
		Short: "Removes a revocation",
		Long:  "Removes the revocation with this id from a running Caddy's list and prints the removed entry as JSON.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := adminCall(cmd, http.MethodDelete, revocationsPath+"/"+url.PathEscape(args[0]), nil)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	addressFlag(cmd)
	return cmd
}

func listCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list [--kind KIND] [--json]",
		Short: "Lists revocations",
		Long:  "Lists the revocations of a running Caddy, oldest first, as a table (id, kind, what it matches, reason, expires) or, with --json, as the admin API's JSON.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, _ := cmd.Flags().GetString("kind")
			asJSON, _ := cmd.Flags().GetBool("json")
			var all []revocation.Entry
			cursor := ""
			for {
				q := url.Values{"limit": {"1000"}}
				if kind != "" {
					q.Set("kind", kind)
				}
				if cursor != "" {
					q.Set("cursor", cursor)
				}
				out, err := adminCall(cmd, http.MethodGet, revocationsPath+"?"+q.Encode(), nil)
				if err != nil {
					return err
				}
				var page struct {
					Revocations []revocation.Entry `json:"revocations"`
					NextCursor  string             `json:"next_cursor"`
				}
				if err := json.Unmarshal(out, &page); err != nil {
					return fmt.Errorf("reading the admin API's answer: %v", err)
				}
				all = append(all, page.Revocations...)
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			if asJSON {
				if all == nil {
					all = []revocation.Entry{}
				}
				data, _ := json.Marshal(map[string]any{"revocations": all})
				return printJSON(cmd.OutOrStdout(), data)
			}
			return printTable(cmd.OutOrStdout(), all)
		},
	}
	cmd.Flags().String("kind", "", "only this kind: jti, token, subject, key or session")
	cmd.Flags().Bool("json", false, "print the admin API's JSON")
	addressFlag(cmd)
	return cmd
}

func printTable(w io.Writer, entries []revocation.Entry) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tMATCHES\tREASON\tEXPIRES")
	for _, e := range entries {
		expires := "never"
		if e.ExpiresAt != nil {
			expires = e.ExpiresAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.ID, e.Kind, oneLine(matches(e)), oneLine(e.Reason), expires)
	}
	return tw.Flush()
}

// matches says in one line which tokens an entry refuses.
func matches(e revocation.Entry) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("jti", e.JTI)
	add("token_id", e.TokenID)
	add("sub", e.Subject)
	add("iss", e.Issuer)
	if e.Before != nil {
		add("before", e.Before.UTC().Format(time.RFC3339))
	}
	add("kid", e.KeyID)
	add("sid", e.SID)
	return strings.Join(parts, " ")
}

// adminCall sends one request to the admin API and returns the body of a
// successful answer; a failure carries the API's own error message.
func adminCall(cmd *cobra.Command, method, uri string, body []byte) ([]byte, error) {
	addrFlag, _ := cmd.Flags().GetString("address")
	addr, err := caddycmd.DetermineAdminAPIAddress(addrFlag, nil, "", "")
	if err != nil {
		return nil, fmt.Errorf("finding the admin API: %v", err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, rd)
	if err != nil {
		if strings.Contains(err.Error(), "performing request") {
			return nil, fmt.Errorf("%v (is Caddy running, with its admin API at %s? see --address)", err, addr)
		}
		return nil, apiMessage(err)
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 64<<20))
}

// apiMessage turns "caddy responded with error: HTTP 400: {"error":"..."}"
// into "HTTP 400: ...".
func apiMessage(err error) error {
	msg := err.Error()
	i := strings.Index(msg, "HTTP ")
	j := strings.IndexByte(msg, '{')
	if i < 0 || j < i {
		return err
	}
	var body struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(strings.TrimSpace(msg[j:])), &body) != nil || body.Error == "" {
		return err
	}
	return fmt.Errorf("%s%s", msg[i:j], body.Error)
}

func printJSON(w io.Writer, data []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(data), "", "  "); err != nil {
		return fmt.Errorf("reading the admin API's answer: %v", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}
