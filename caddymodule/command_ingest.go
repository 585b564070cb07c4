package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"github.com/tidwall/gjson"
	"golang.org/x/term"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/rag"
)

// ingestBatch is how many files one change of the collection carries (an
// embedded store writes its snapshot once per change).
const ingestBatch = 32

// ingestCommand is `caddy ai-gateway ingest`.
func ingestCommand() *cobra.Command {
	var (
		config, adapter, collection string
		prune                       bool
	)
	cmd := &cobra.Command{
		Use:   "ingest --config <file> [--adapter caddyfile] --collection <name> [--prune] <path>...",
		Short: "Read .txt, .md, .html and .pdf files into a RAG collection",
		Long: `Reads the files under each path (a file or a folder, recursively) into the
collection declared in the config's ai_gateway app: split into chunks,
embedded when the collection has a model, stored. A document's source is
its path relative to the path argument it was found under. A file whose
content is unchanged is skipped; a changed one replaces its chunks;
--prune removes the documents no longer found under the paths.

A gateway running with the same embedded store loads the changes on its
next config reload or restart.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, paths []string) error {
			if config == "" || collection == "" {
				return errors.New("--config and --collection are required")
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runIngest(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), config, adapter, collection, prune, paths)
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", "", "configuration file")
	cmd.Flags().StringVarP(&adapter, "adapter", "a", "", "config adapter (e.g. caddyfile)")
	cmd.Flags().StringVar(&collection, "collection", "", "collection name")
	cmd.Flags().BoolVar(&prune, "prune", false, "remove documents no longer under the paths")
	return cmd
}

// ingestFile is a file to read and its document id.
type ingestFile struct{ path, id string }

func runIngest(ctx context.Context, stdout, stderr io.Writer, config, adapter, name string, prune bool, paths []string) error {
	start := time.Now()
	cfgJSON, _, _, err := caddycmd.LoadConfig(config, adapter)
	if err != nil {
		return fmt.Errorf("loading %s: %v", config, err)
	}
	raw := gjson.GetBytes(cfgJSON, "apps.ai_gateway")
	if !raw.Exists() {
		return fmt.Errorf("%s has no ai_gateway app", config)
	}
	app := new(App)
	if err := json.Unmarshal([]byte(raw.Raw), app); err != nil {
		return fmt.Errorf("decoding the ai_gateway app: %v", err)
	}
	found := false
	for _, cc := range app.Collections {
		found = found || (cc != nil && cc.Name == name)
	}
	if !found {
		return fmt.Errorf("no collection %q in %s", name, config)
	}
	cctx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
	defer cancel()
	if err := app.Provision(cctx); err != nil {
		return fmt.Errorf("provisioning the ai_gateway app: %v", err)
	}
	defer app.Cleanup()
	col, _ := app.collection(name)

	var files []ingestFile
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			files = append(files, ingestFile{p, filepath.Base(p)})
			continue
		}
		err = filepath.WalkDir(p, func(fp string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !rag.Readable(fp) {
				return nil
			}
			rel, err := filepath.Rel(p, fp)
			if err != nil {
				return err
			}
			files = append(files, ingestFile{fp, filepath.ToSlash(rel)})
			return nil
		})
		if err != nil {
			return err
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].id < files[j].id })

	var bar *progressbar.ProgressBar
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar = progressbar.NewOptions(len(files), progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("ingest "+name),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
	}
	var (
		nFiles, nChunks, nSkipped, nFailed int
		batch                              []rag.Document
		batchFiles                         []ingestFile
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		res, err := col.PutBatch(ctx, batch)
		if err != nil {
			return fmt.Errorf("storing %s…: %v", batchFiles[0].id, err)
		}
		for i, r := range res {
			if r.Changed {
				nFiles++
				nChunks += r.Chunks
			} else {
				nSkipped++
			}
			if bar != nil {
				_ = bar.Add(1)
			} else if r.Changed {
				fmt.Fprintf(stdout, "ingest: %s: %d chunks\n", batchFiles[i].id, r.Chunks)
			} else {
				fmt.Fprintf(stdout, "ingest: %s: unchanged\n", batchFiles[i].id)
			}
		}
		batch, batchFiles = batch[:0], batchFiles[:0]
		return nil
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		doc, err := rag.ReadFile(f.path, f.id)
		if err != nil {
			nFailed++
			if bar != nil {
				_ = bar.Add(1)
			}
			fmt.Fprintf(stderr, "ingest: %s: %v\n", f.id, err)
			continue
		}
		batch, batchFiles = append(batch, doc), append(batchFiles, f)
		if len(batch) >= ingestBatch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	nPruned := 0
	if prune {
		keep := make(map[string]bool, len(files))
		for _, f := range files {
			keep[f.id] = true
		}
		ids, err := col.IDs(ctx)
		if err != nil {
			return err
		}
		var gone []string
		for _, id := range ids {
			if !keep[id] {
				gone = append(gone, id)
			}
		}
		if len(gone) > 0 {
			if nPruned, err = col.Delete(ctx, gone...); err != nil {
				return err
			}
		}
		if bar == nil {
			for _, id := range gone {
				fmt.Fprintf(stdout, "ingest: %s: pruned\n", id)
			}
		}
	}
	if bar != nil {
		_ = bar.Finish()
	}
	fmt.Fprintf(stdout, "ingest %s: %d files ingested (%d chunks), %d unchanged, %d pruned, %d failed in %.2fs; version %d\n",
		name, nFiles, nChunks, nSkipped, nPruned, nFailed, time.Since(start).Seconds(), col.Version())
	if nFailed > 0 {
		return fmt.Errorf("%d files could not be read", nFailed)
	}
	return nil
}
