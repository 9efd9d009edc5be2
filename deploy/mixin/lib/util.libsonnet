// Small string helpers shared by the rules, alerts and dashboards.
{
  has(s, sub):: std.length(std.findSubstr(sub, s)) > 0,

  // Text written over several lines for reading (a ||| block) as the single line YAML's `>-`
  // would make of it: lines joined by one space, blank lines and indentation dropped.
  fold(s):: std.join(' ', [std.lstripChars(l, ' ') for l in std.split(s, '\n') if std.lstripChars(l, ' ') != '']),

  // Every non-empty line indented by n spaces.
  indent(s, n=2):: std.join('\n', [if l == '' then l else std.repeat(' ', n) + l for l in std.split(s, '\n')]),

  // PromQL label matchers, empty parts dropped: {a, b}
  matchers(parts):: '{' + std.join(', ', [p for p in parts if p != '' && p != null]) + '}',

  // A regex alternation of literal words for a PromQL =~ matcher (role and code values need no escaping
  // beyond the dot).
  alternation(words):: std.join('|', [std.strReplace(w, '.', '\\\\.') for w in words]),

  // Lower-case words separated by hyphens: "Mailflow: connector detail" -> mailflow-connector-detail.
  slug(s)::
    local keep(ch) = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
    local cs = [if keep(ch) then ch else '-' for ch in std.stringChars(std.asciiLower(s))];
    std.join('-', [w for w in std.split(std.join('', cs), '-') if w != '']),
}
