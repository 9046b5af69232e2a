package jwtguard

import (
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

	"github.com/jwtguard/caddy-jwtguard/audit"
)

func usageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "usage (--sub SUB [--iss ISS] | --token-id ID) [--json]",
		Short: "Shows where and how tokens were used",
		Long: `Shows the usage a running Caddy recorded for a subject's tokens (most
recently used first) or for one token: when, how often, and from which
client address and User-Agent, with the country where a geoip database
is configured. Usage is recorded by handlers with a detect block.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for flag, param := range map[string]string{"sub": "sub", "iss": "iss", "token-id": "token_id"} {
				if v, _ := cmd.Flags().GetString(flag); v != "" {
					q.Set(param, v)
				}
			}
			if q.Get("sub") == "" && q.Get("token_id") == "" {
				return errors.New("say whose usage: --sub SUB [--iss ISS] or --token-id ID")
			}
			out, err := adminCall(cmd, http.MethodGet, "/jwtguard/usage?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			var page struct {
				Tokens []audit.Usage `json:"tokens"`
			}
			if err := json.Unmarshal(out, &page); err != nil {
				return fmt.Errorf("reading the admin API's answer: %v", err)
			}
			return printUsage(cmd.OutOrStdout(), page.Tokens)
		},
	}
	cmd.Flags().String("sub", "", "the subject whose tokens to show")
	cmd.Flags().String("iss", "", "with --sub: only tokens from this issuer")
	cmd.Flags().String("token-id", "", "one token, by its token id (<iss>#<jti> or sha256:...)")
	cmd.Flags().Bool("json", false, "print the admin API's JSON")
	addressFlag(cmd)
	return cmd
}

func printUsage(w io.Writer, tokens []audit.Usage) error {
	if len(tokens) == 0 {
		_, err := fmt.Fprintln(w, "no usage recorded")
		return err
	}
	for i, u := range tokens {
		if i > 0 {
			fmt.Fprintln(w)
		}
		state := "valid"
		if u.Revoked {
			state = "REVOKED"
		}
		fmt.Fprintf(w, "token %s  sub=%s  %s\n", oneLine(u.TokenID), oneLine(u.Subject), state)
		fmt.Fprintf(w, "  %d requests from %s to %s, expires %s\n", u.Requests, rfc3339(u.FirstSeen), rfc3339(u.LastSeen), rfc3339(u.ExpiresAt))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  CLIENT\tCOUNTRY\tUSER AGENT\tREQUESTS\tFIRST SEEN\tLAST SEEN")
		for _, c := range u.Clients {
			country := c.Country
			if country == "" {
				country = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", c.IP, country, oneLine(c.UserAgent), c.Requests, rfc3339(c.FirstSeen), rfc3339(c.LastSeen))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if u.ClientsDropped > 0 {
			fmt.Fprintf(w, "  ... and %d more client/User-Agent pairs\n", u.ClientsDropped)
		}
	}
	return nil
}

func eventsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events [--sub SUB] [--token-id ID] [--detector NAME] [--json]",
		Short: "Lists detection events, oldest first",
		Long: `Lists the events that the detect rules of a running Caddy fired, oldest
first: when, which rule, what it did, which token and subject, from where,
and what it saw.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{"limit": {"1000"}}
			for flag, param := range map[string]string{"sub": "sub", "token-id": "token_id", "detector": "detector"} {
				if v, _ := cmd.Flags().GetString(flag); v != "" {
					q.Set(param, v)
				}
			}
			var all []json.RawMessage
			for {
				out, err := adminCall(cmd, http.MethodGet, "/jwtguard/events?"+q.Encode(), nil)
				if err != nil {
					return err
				}
				var page struct {
					Events     []json.RawMessage `json:"events"`
					NextCursor string            `json:"next_cursor"`
				}
				if err := json.Unmarshal(out, &page); err != nil {
					return fmt.Errorf("reading the admin API's answer: %v", err)
				}
				all = append(all, page.Events...)
				if page.NextCursor == "" {
					break
				}
				q.Set("cursor", page.NextCursor)
			}
			if all == nil {
				all = []json.RawMessage{}
			}
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				data, _ := json.Marshal(map[string]any{"events": all})
				return printJSON(cmd.OutOrStdout(), data)
			}
			events := make([]audit.Event, len(all))
			for i, raw := range all {
				if err := json.Unmarshal(raw, &events[i]); err != nil {
					return fmt.Errorf("reading the admin API's answer: %v", err)
				}
			}
			return printEvents(cmd.OutOrStdout(), events)
		},
	}
	cmd.Flags().String("sub", "", "only events of this subject")
	cmd.Flags().String("token-id", "", "only events of this token")
	cmd.Flags().String("detector", "", "only events of this rule: "+strings.Join(detectorNames, ", "))
	cmd.Flags().Bool("json", false, "print the admin API's JSON")
	addressFlag(cmd)
	return cmd
}

func printEvents(w io.Writer, events []audit.Event) error {
	if len(events) == 0 {
		_, err := fmt.Fprintln(w, "no events")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tDETECTOR\tACTION\tSUB\tCLIENT\tDETAIL\tTOKEN\tREVOCATION")
	for _, e := range events {
		rev := e.Revocation
		if rev == "" {
			rev = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rfc3339(e.Time), e.Detector, e.Action, oneLine(e.Subject), e.ClientIP, oneLine(e.Detail), oneLine(e.TokenID), rev)
	}
	return tw.Flush()
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// oneLine keeps a string a client or a token chose (a User-Agent, a sub,
// a token id) from breaking the table or driving the operator's terminal:
// control characters (tab included) become '?'.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func clusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Shows how the revocation list replicates",
		Long: `Prints the replication status of a running Caddy as JSON: the engine
("none" for a node alone), this node's name, whether Redis answers, how
many changes made here wait to be published, how far this node has applied
the shared log, and how far behind it is.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := adminCall(cmd, http.MethodGet, "/jwtguard/cluster", nil)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	addressFlag(cmd)
	return cmd
}
