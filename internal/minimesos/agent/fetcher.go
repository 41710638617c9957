package agent

import (
	"archive/tar"
	"archive/zip"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// fetchURIs brings CommandInfo URIs into the sandbox as the Mesos fetcher
// does: local paths (or file://) are copied, http(s) URLs downloaded, to
// output_file or the URI's base name; executable makes the file
// executable (and is not extracted); extract (the default) unpacks .tar,
// .tar.gz/.tgz, .tar.bz2/.tbz2, .tar.xz/.txz (with the xz tool) and .zip
// into the sandbox and gunzips a lone .gz, keeping the archive. The error
// names the URI that failed.
func fetchURIs(ctx context.Context, uris []*mesospb.CommandInfo_URI, dir string) error {
	for _, u := range uris {
		if err := fetchURI(ctx, u, dir); err != nil {
			return fmt.Errorf("Failed to fetch '%s': %w", u.GetValue(), err)
		}
	}
	return nil
}

// fetchClient downloads URIs; no proxy, as the agent's peers are local.
var fetchClient = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Minute}

func fetchURI(ctx context.Context, u *mesospb.CommandInfo_URI, dir string) error {
	src := u.GetValue()
	name := u.GetOutputFile()
	if name == "" {
		name = path.Base(strings.SplitN(src, "?", 2)[0])
	}
	if name == "" || name == "." || name == "/" || strings.Contains(name, "..") {
		return fmt.Errorf("cannot tell a file name from the URI; set output_file")
	}
	dst := filepath.Join(dir, filepath.Clean("/" + name)[1:])
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	var r io.ReadCloser
	switch {
	case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return err
		}
		resp, err := fetchClient.Do(req)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("the server answered %s", resp.Status)
		}
		r = resp.Body
	case strings.HasPrefix(src, "file://"):
		p, err := url.Parse(src)
		if err != nil {
			return err
		}
		f, err := os.Open(p.Path)
		if err != nil {
			return err
		}
		r = f
	case strings.HasPrefix(src, "/"):
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		r = f
	default:
		return fmt.Errorf("unsupported URI: km's fetcher takes absolute paths, file://, http:// and https:// URIs")
	}
	defer r.Close()
	mode := os.FileMode(0o644)
	if u.GetExecutable() {
		mode = 0o755
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if u.GetExecutable() {
		return os.Chmod(dst, 0o755)
	}
	if u.Extract == nil || u.GetExtract() {
		return extract(dst, dir)
	}
	return nil
}

// extract unpacks a recognised archive into dir (Mesos: tar, tar.gz,
// tgz, tar.bz2, tbz2, zip; a lone .gz is gunzipped).
func extract(file, dir string) error {
	lower := strings.ToLower(file)
	open := func() (*os.File, error) { return os.Open(file) }
	switch {
	case strings.HasSuffix(lower, ".tar.gz") || strings.HasSuffix(lower, ".tgz"):
		f, err := open()
		if err != nil {
			return err
		}
		defer f.Close()
		gz, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		return untar(gz, dir)
	case strings.HasSuffix(lower, ".tar.bz2") || strings.HasSuffix(lower, ".tbz2"):
		f, err := open()
		if err != nil {
			return err
		}
		defer f.Close()
		return untar(bzip2.NewReader(f), dir)
	case strings.HasSuffix(lower, ".tar.xz") || strings.HasSuffix(lower, ".txz"):
		xz, err := exec.LookPath("xz")
		if err != nil {
			return fmt.Errorf("cannot extract %s: .tar.xz needs the xz tool, which this agent lacks; install xz or use .tar.gz, .tar.bz2 or .zip", filepath.Base(file))
		}
		f, err := open()
		if err != nil {
			return err
		}
		defer f.Close()
		cmd := exec.Command(xz, "-dc")
		cmd.Stdin = f
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		uerr := untar(out, dir)
		io.Copy(io.Discard, out)
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("xz -d %s: %v %s", filepath.Base(file), err, strings.TrimSpace(stderr.String()))
		}
		return uerr
	case strings.HasSuffix(lower, ".tar"):
		f, err := open()
		if err != nil {
			return err
		}
		defer f.Close()
		return untar(f, dir)
	case strings.HasSuffix(lower, ".zip"):
		return unzip(file, dir)
	case strings.HasSuffix(lower, ".gz"):
		f, err := open()
		if err != nil {
			return err
		}
		defer f.Close()
		gz, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		out, err := os.Create(strings.TrimSuffix(file, file[len(file)-3:]))
		if err != nil {
			return err
		}
		defer out.Close()
		_, err = io.Copy(out, gz)
		return err
	}
	return nil
}

// safeJoin refuses archive entries that would land outside dir.
func safeJoin(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if p != dir && !strings.HasPrefix(p, dir+string(os.PathSeparator)) {
		return "", fmt.Errorf("archive entry %q points outside the sandbox", name)
	}
	return p, nil
}

func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p, err := safeJoin(dir, h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, os.FileMode(h.Mode)&0o777)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return err
			}
			f.Close()
		case tar.TypeSymlink:
			// A link may only point inside the sandbox, or a later entry
			// could be written through it to anywhere.
			if filepath.IsAbs(h.Linkname) {
				return fmt.Errorf("archive entry %q links to the absolute path %q outside the sandbox", h.Name, h.Linkname)
			}
			if _, err := safeJoin(dir, filepath.Join(filepath.Dir(h.Name), h.Linkname)); err != nil {
				return fmt.Errorf("archive entry %q links to %q outside the sandbox", h.Name, h.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			os.Remove(p)
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
		}
	}
}

func unzip(file, dir string) error {
	zr, err := zip.OpenReader(file)
	if err != nil {
		return err
	}
	defer zr.Close()
	for _, f := range zr.File {
		p, err := safeJoin(dir, f.Name)
		if err != nil {
			return err
		}
		if f.FileInfo().IsDir() {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		out, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, f.Mode()&0o777|0o600)
		if err != nil {
			rc.Close()
			return err
		}
		_, err = io.Copy(out, rc)
		rc.Close()
		out.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
