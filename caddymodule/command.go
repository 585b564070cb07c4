package caddymodule

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "ai-gateway",
		Usage: "hash-key [<secret>] | new-key | ingest --config <file> --collection <name> <path>...",
		Short: "Caddy AI Gateway utilities (gateway keys)",
		Long: `
Utilities for Caddy AI Gateway.

  caddy ai-gateway new-key          prints a new random gateway key and its sha256
  caddy ai-gateway hash-key SECRET  prints the sha256 to put in a key's "sha256"
  caddy ai-gateway hash-key < file  reads the secret from standard input
  caddy ai-gateway ingest --config Caddyfile --collection docs PATH...
                                    reads .txt, .md, .html and .pdf files into a RAG collection

Keys can also be created at run time through the admin API:
  curl -X POST localhost:2019/ai_gateway/keys -d '{"name":"team-a","rpm":60}'`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(&cobra.Command{
				Use:   "hash-key [<secret>]",
				Short: "Print the SHA-256 of a gateway key",
				Args:  cobra.MaximumNArgs(1),
				RunE: func(cmd *cobra.Command, args []string) error {
					secret := ""
					if len(args) == 1 {
						secret = args[0]
					} else {
						line, err := bufio.NewReader(os.Stdin).ReadString('\n')
						if err != nil && line == "" {
							return fmt.Errorf("reading the secret from stdin: %v", err)
						}
						secret = strings.TrimRight(line, "\r\n")
					}
					if secret == "" {
						return fmt.Errorf("empty secret")
					}
					fmt.Fprintln(cmd.OutOrStdout(), auth.HashSecret(secret).String())
					return nil
				},
			})
			cmd.AddCommand(ingestCommand())
			cmd.AddCommand(&cobra.Command{
				Use:   "new-key",
				Short: "Generate a new gateway key and print it with its SHA-256",
				Args:  cobra.NoArgs,
				RunE: func(cmd *cobra.Command, _ []string) error {
					secret, err := auth.NewSecret()
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "secret: %s\nsha256: %s\n", secret, auth.HashSecret(secret).String())
					return nil
				},
			})
		},
	})
}
