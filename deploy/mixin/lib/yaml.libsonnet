// A small YAML writer for the generated rule files and Kubernetes manifests (jsonnet 0.18 has
// std.manifestYamlDoc, but it quotes every key and value and cannot write comments).
//
// * Objects keep a readable key order (see `order` below), everything else is alphabetical.
// * A hidden field `'#'::` on an object is written as `#` comment lines above it.
// * Strings: plain when that is unambiguous, a literal block (`|`, `|-`, `|+`) when they contain
//   line breaks, a folded block (`>-`) wrapped at spaces when they are long (YAML folds the line
//   breaks back into those single spaces), single-quoted otherwise, double-quoted (JSON escapes)
//   when they contain control characters.
// build.sh --check parses every generated file back (PyYAML, when installed) and compares it with
// the data jsonnet produced, so a mistake here cannot go unnoticed.
local width = 100;

local order = [
  // rule groups and rules
  'name', 'interval', 'record', 'alert', 'expr', 'for', 'keep_firing_for', 'labels', 'annotations', 'rules',
  // annotations
  'summary', 'description', 'runbook_url', 'dashboard_url',
  // Kubernetes objects
  'apiVersion', 'kind', 'metadata', 'namespace', 'spec', 'data',
  // Alertmanager / Prometheus snippets
  'source_labels', 'regex', 'target_label', 'replacement', 'action',
];

local rank(k) =
  local i = std.find(k, order);
  if std.length(i) > 0 then i[0] else std.length(order);

local sortedKeys(o) = std.sort(std.objectFields(o), function(k) '%04d%s' % [rank(k), k]);

local chars(s) = std.stringChars(s);
local isDigit(c) = c >= '0' && c <= '9';
local isLetter(c) = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

// Words YAML 1.1 (go-yaml v2, which Prometheus uses) reads as something other than a string.
local special = ['true', 'false', 'yes', 'no', 'on', 'off', 'y', 'n', 'null', '~'];

local hasControl(s) = std.length([c for c in chars(s) if std.codepoint(c) < 32 || std.codepoint(c) == 127]) > 0;

// 10m, 2h, 500ms, 1d: Prometheus durations read as strings by YAML.
local isDuration(s) =
  local n = std.length(s);
  local digits = std.length(std.lstripChars(s, '0123456789'));
  local unit = std.substr(s, n - digits, digits);
  digits > 0 && digits < n && std.member(['ms', 's', 'm', 'h', 'd', 'w', 'y'], unit);

local plainChars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _./:#%?&=+-';

local isPlain(s) =
  std.length(s) > 0
  && (isLetter(s[0]) || isDuration(s))
  && std.length([c for c in chars(s) if std.length(std.findSubstr(c, plainChars)) == 0]) == 0
  && !std.endsWith(s, ' ') && !std.endsWith(s, ':')
  && std.length(std.findSubstr(': ', s)) == 0
  && std.length(std.findSubstr(' #', s)) == 0
  && !std.member(special, std.asciiLower(s));

local isPlainKey(k) = isPlain(k) && std.length(std.findSubstr(' ', k)) == 0;

local singleQuoted(s) = "'" + std.strReplace(s, "'", "''") + "'";

local quoted(s) = if hasControl(s) then std.escapeStringJson(s) else singleQuoted(s);

local key(k) = if isPlainKey(k) then k else quoted(k);

local spaces(n) = std.repeat(' ', n);

// Lines of at most `width - indent` characters, broken at single spaces.
// A template action ({{ ... }}) is never split.
local wrap(s, indent) =
  local opens(w) = std.length(std.findSubstr('{{', w)) - std.length(std.findSubstr('}}', w));
  local words = std.foldl(
    function(acc, w)
      if std.length(acc) > 0 && opens(acc[std.length(acc) - 1]) > 0
      then acc[:std.length(acc) - 1] + [acc[std.length(acc) - 1] + ' ' + w]
      else acc + [w],
    std.split(s, ' '),
    []
  );
  local room = std.max(40, width - indent);
  local step(acc, w) =
    if acc.cur == '' then acc { cur: w }
    else if std.length(acc.cur) + 1 + std.length(w) <= room then acc { cur: acc.cur + ' ' + w }
    else acc { lines: acc.lines + [acc.cur], cur: w };
  local r = std.foldl(step, words, { lines: [], cur: '' });
  r.lines + [r.cur];

// Folding turns each line break back into one space, so a string can be folded only when its
// words are separated by single spaces and nothing else.
local foldable(s) =
  std.length(std.findSubstr(' ', s)) > 0
  && !hasControl(s)
  && std.length(std.findSubstr('  ', s)) == 0
  && !std.startsWith(s, ' ') && !std.endsWith(s, ' ');

// A string as the value after `key:` or `- `: [first line suffix, further lines...]
local str(s, indent) =
  if std.length(std.findSubstr('\n', s)) > 0 && std.length(std.findSubstr('\r', s)) == 0
     && std.length([c for c in chars(s) if std.codepoint(c) < 32 && c != '\n' && c != '\t']) == 0 then
    local trailing = std.length(s) - std.length(std.rstripChars(s, '\n'));
    local chomp = if trailing == 0 then '-' else if trailing == 1 then '' else '+';
    local body = std.rstripChars(s, '\n');
    local lines = std.split(body, '\n') + (if trailing > 1 then std.repeat([''], trailing - 1) else []);
    local indicator = if std.startsWith(lines[0], ' ') then '2' else '';
    [' |' + indicator + chomp] + [if l == '' then '' else spaces(indent) + l for l in lines]
  else if isPlain(s) && std.length(s) + indent <= width then
    [' ' + s]
  else if std.length(s) + indent > width && foldable(s) then
    [' >-'] + [spaces(indent) + l for l in wrap(s, indent)]
  else
    [' ' + quoted(s)];

local scalar(v) =
  if v == null then 'null'
  else if std.isBoolean(v) then (if v then 'true' else 'false')
  else if std.isNumber(v) then std.toString(v)
  else error 'not a scalar: ' + std.toString(v);

local comment(o, indent) =
  if std.isObject(o) && std.objectHasAll(o, '#') then
    [spaces(indent) + (if l == '' then '#' else '# ' + l) for l in std.split(std.rstripChars(o['#'], '\n'), '\n')]
  else [];

// The lines of `v` written as the value of a key (or array item) at `indent`; the first element
// is the suffix of the line that holds the key (or the dash).
local value(v, indent) =
  if std.isString(v) then str(v, indent)
  else if std.isObject(v) then
    if std.length(std.objectFields(v)) == 0 then [' {}']
    else [''] + object(v, indent)
  else if std.isArray(v) then
    if std.length(v) == 0 then [' []']
    else [''] + array(v, indent)
  else [' ' + scalar(v)],

// The lines of an object whose keys start at column `indent`.
object(o, indent) = std.flattenArrays([
  local v = o[k];
  local c = comment(v, indent);
  // Arrays under a key are indented by two more; objects and blocks too.
  local lines = value(v, indent + 2);
  c + [spaces(indent) + key(k) + ':' + lines[0]] + lines[1:]
  for k in sortedKeys(o)
]),

// The lines of an array whose dashes are at column `indent`.
array(a, indent) = std.flattenArrays([
  local c = comment(item, indent);
  if std.isObject(item) && std.length(std.objectFields(item)) > 0 then
    // The first key on the dash line, the others below it.
    local lines = object(item, indent + 2);
    c + [spaces(indent) + '- ' + std.lstripChars(lines[0], ' ')] + lines[1:]
  else
    local lines = value(item, indent + 2);
    c + [spaces(indent) + '-' + lines[0]] + lines[1:]
  for item in a
]);

{
  // One YAML document (with its header comment, the '#' field of a top-level object).
  manifest(doc)::
    std.join('\n', comment(doc, 0) + (
      if std.isObject(doc) then object(doc, 0)
      else if std.isArray(doc) then array(doc, 0)
      else error 'a YAML document here is an object or an array'
    )) + '\n',

  // Several documents in one file, separated by ---.
  manifestStream(docs)::
    std.join('---\n', [self.manifest(d) for d in docs]),
}
