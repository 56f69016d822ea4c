package playbooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits on outside input. Playbooks and inventories are small hand-written files;
// anything far bigger or deeper is a mistake or an attack on the parser.
const (
	maxFileSize   = 1 << 20  // bytes in a playbook or inventory file
	maxUploadSize = 64 << 20 // bytes in an upload template (rendered in memory)
	// maxFileUploadSize bounds a plain upload, which is streamed: a sanity limit.
	maxFileUploadSize = 1 << 40
	maxDepth          = 32 // nesting of YAML mappings and lists
)

// readLimited reads a local file of at most limit bytes. It refuses anything that is
// not a regular file before opening it, so a FIFO or a device cannot block or flood
// the reader. The error text does not repeat the path: callers put it in context.
func readLimited(path string, limit int64) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fsProblem(err)
	}
	if err := regularFile(st); err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, tooLarge(st.Size(), limit)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fsProblem(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fsProblem(err)
	}
	if int64(len(data)) > limit { // the file grew after the Stat
		return nil, tooLarge(int64(len(data)), limit)
	}
	return data, nil
}

func regularFile(st fs.FileInfo) error {
	switch {
	case st.IsDir():
		return errors.New("is a directory, not a file")
	case !st.Mode().IsRegular():
		return errors.New("is not a regular file")
	}
	return nil
}

// fsProblem turns a file system error into words without the path, which the caller
// already shows.
func fsProblem(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("file does not exist")
	case errors.Is(err, fs.ErrPermission):
		return errors.New("permission denied")
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func tooLarge(size, limit int64) error {
	return fmt.Errorf("file is too large (%s); the limit is %s", byteSize(size), byteSize(limit))
}

// byteSize prints a size in the unit that reads best.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// yamlLine matches the position yaml.v3 puts in front of its syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseDocument returns the root node of the single YAML document in data, checked for
// the constructs this format refuses, or nil after reporting why there is none.
func (f *file) parseDocument(data []byte) *yaml.Node {
	if len(data) > maxFileSize {
		f.fileError("%s", tooLarge(int64(len(data)), maxFileSize))
		return nil
	}
	doc, extra, err := decodeYAML(data)
	switch {
	case err != nil:
		f.syntaxError(data, err)
		return nil
	case extra != nil:
		f.errorAt(extra, "", "the file holds more than one YAML document (a second one starts here after ---); write one document per file")
		return nil
	case doc == nil || len(doc.Content) == 0 || doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null":
		f.fileError("file is empty; expected a YAML mapping starting with apiVersion: %s", APIVersion)
		return nil
	}
	root := doc.Content[0]
	if !f.checkTree(root, 1) {
		return nil
	}
	return root
}

// decodeYAML parses data into a node tree and reads on to make sure no second document
// follows. yaml.v3 panics on a few malformed inputs (internal errors it asks to be
// reported); those become an ordinary error here, never a crash of the caller.
func decodeYAML(data []byte) (doc, extra *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			doc, extra, err = nil, nil, fmt.Errorf("yaml: the YAML parser failed on this file (%v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, nil
		}
		return nil, nil, err
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
		return &first, nil, nil
	case err != nil:
		return nil, nil, err
	}
	return &first, &second, nil
}

// syntaxError reports a yaml.v3 error at the line yaml gives (for some errors yaml.v3
// names the line above the problem). yaml.v3 gives no column. Tabs in indentation are
// the most common mistake: when the line or the next one indents with a tab, the
// message says where, and the column is given when it is on the reported line.
func (f *file) syntaxError(data []byte, err error) {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	col := 0
	if line > 0 {
		lines := bytes.Split(data, []byte("\n"))
		for l := line; l <= line+1 && l <= len(lines); l++ {
			text := lines[l-1]
			indent := len(text) - len(bytes.TrimLeft(text, " \t"))
			i := bytes.IndexByte(text[:indent], '\t')
			if i < 0 {
				continue
			}
			if l == line {
				col = i + 1
			}
			msg += fmt.Sprintf(" (line %d indents with a tab; YAML allows only spaces for indentation)", l)
			break
		}
	}
	f.r.add(&Error{File: f.name, Line: line, Column: col, Msg: "invalid YAML: " + msg})
}

// checkTree refuses anchors, aliases, merge keys and explicit tags, and caps nesting.
// Aliases could multiply a small file into a huge tree ("billion laughs"), and none of
// these constructs is needed to write a playbook. It reports the first problem only and
// returns false: the tree is not read further.
func (f *file) checkTree(n *yaml.Node, depth int) bool {
	switch {
	case depth > maxDepth:
		f.errorAt(n, "", "the YAML is nested too deeply (more than %d levels)", maxDepth)
		return false
	case n.Kind == yaml.AliasNode || n.Anchor != "":
		f.errorAt(n, "", "aliases and anchors are not supported (&name, *name); write each value out in full")
		return false
	case n.Style&yaml.TaggedStyle != 0:
		f.errorAt(n, "", "YAML tags such as %s are not supported; quote the value if it must be a string", quote(n.Tag))
		return false
	case n.Kind == yaml.ScalarNode && n.Tag == "!!merge":
		f.errorAt(n, "", "merge keys (<<) are not supported; write each field out in full")
		return false
	}
	for _, c := range n.Content {
		if !f.checkTree(c, depth+1) {
			return false
		}
	}
	return true
}
