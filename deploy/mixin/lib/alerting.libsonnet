// Building blocks of the rules, from the mixin's config `c`: selectors, the role join that gives
// connector alerts their severity, template queries for annotations, and dashboard links.
local util = import 'util.libsonnet';

function(c) {
  local h = self,

  // ----------------------------------------------------------------------------------------------
  // Selectors of the agent's series (every expression uses the configured selector).
  // ----------------------------------------------------------------------------------------------
  sel(extra=[]):: util.matchers([c.selector] + (if std.isArray(extra) then extra else [extra])),
  m(metric, extra=[]):: metric + h.sel(extra),
  // A gauge as last scraped: a failed scrape or an agent restart does not make it vanish.
  lo(metric, extra=[]):: 'last_over_time(' + h.m(metric, extra) + '[2m])',

  // The recording rules (rules.libsonnet) and the label sets the role join matches on.
  hostFailures:: 'connector_host_code_reason:mailflow_probe_failures:increase' + c.thresholds.hostFailureWindow,
  connectorRole:: 'connector_role:mailflow_connector_info:max',
  connectorKey:: 'job, instance, connector',

  minutes(n):: if n == 1 then '1 minute' else n + ' minutes',
  hours(n):: if n == 1 then '1 hour' else n + ' hours',

  // ----------------------------------------------------------------------------------------------
  // Severities.
  // ----------------------------------------------------------------------------------------------
  local rank(s) =
    local i = std.find(s, c.severityOrder);
    assert std.length(i) == 1 : 'severity %s is not in severityOrder %s' % [s, c.severityOrder];
    i[0],
  lower(a, b):: if rank(a) <= rank(b) then a else b,
  severity(name):: c.alertSeverity[name],
  forOf(name):: c.alertFor[name],

  // ----------------------------------------------------------------------------------------------
  // Template queries for annotations. `aggregated`: the alert has no instance label (haAggregate),
  // so queries name the job only and merge the replicas the way the alert does.
  // ----------------------------------------------------------------------------------------------
  tq(aggregated):: {
    local agentM = if aggregated then 'job=%q' else 'job=%q,instance=%q',
    local agentA = if aggregated then '$labels.job' else '$labels.job $labels.instance',
    local wrap(e) = if aggregated then 'max without (' + std.join(', ', c.haReplicaLabels) + ') (' + e + ')' else e,
    local inner(metric, matchers) = metric + '{' + (if matchers == '' then '' else matchers + ',') + agentM + '}',
    // The alert's agent's series of `metric` (matchers like 'connector=%q'), as last scraped.
    lo(metric, matchers=''):: wrap('last_over_time(' + inner(metric, matchers) + '[2m])'),
    // The same, of a recorded series (evaluated every time, so no last_over_time).
    sel(metric, matchers=''):: wrap(inner(metric, matchers)),
    // `printf "<expr>" <args> <the agent's labels> | query`: args fill the %q of the matchers,
    // the agent's labels those that lo() and sel() add.
    query(expr, args=''):: (
      local argv = std.join(' ', [a for a in std.split(args, ' ') if a != ''] + std.split(agentA, ' '));
      local nq = std.length(std.findSubstr('%q', expr));
      local na = std.length(std.split(argv, ' '));
      assert nq == na : 'template query %s has %d %%q but %d arguments (%s)' % [expr, nq, na, argv];
      local quoted =
        if util.has(expr, '"') then (assert !util.has(expr, '`') : expr; '`' + expr + '`')
        else '"' + expr + '"';
      'printf ' + quoted + ' ' + argv + ' | query'
    ),
  },

  // ----------------------------------------------------------------------------------------------
  // Links.
  // ----------------------------------------------------------------------------------------------
  runbook(path):: c.runbookBaseUrl + '/' + path,
  dashboardUid(name):: c.dashboardUidPrefix + '-' + name,
  // A dashboard for the alert's job (and connector, when it has one).
  dashboardUrl(name, connector=false)::
    c.dashboardUrlBase + '/d/' + h.dashboardUid(name) + '?var-job={{ $labels.job | urlquery }}'
    + (if connector then '&var-connector={{ $labels.connector | urlquery }}' else ''),

  // ----------------------------------------------------------------------------------------------
  // Alerts.
  // ----------------------------------------------------------------------------------------------
  local forField(f) = if f == '0s' then {} else { 'for': f },

  // An alert about one agent: labels job and instance (plus those of its metric).
  agentAlert(name, expr, annotations, labels={}, comment=null):: [
    { alert: name, expr: expr, labels: labels { severity: h.severity(name) }, annotations: annotations }
    + forField(h.forOf(name))
    + (if comment == null then {} else { '#':: comment }),
  ],

  // An alert about one connector. `expr` is per replica, with the labels job, instance and
  // connector; the rules join the connector's role (label `role`) and take the severity from it:
  // the lower of the alert's own and the role's. Roles that give the alert another `for:` get a
  // rule of their own. With haAggregate the replicas are merged (max without haReplicaLabels).
  connectorAlert(name, expr, annotations, labels={}, severity=h.severity(name), forDefault=h.forOf(name), aggregate=c.haAggregate, comment=null)::
    local roles = std.objectFields(c.roles);
    assert std.member(roles, c.defaultRole) : 'defaultRole %s is not one of roles' % c.defaultRole;
    local eff(r) = h.lower(severity, c.roles[r].severity);
    local forOf(r) =
      local o = std.get(c.roles[r], 'for', {});
      if std.objectHas(o, name) then o[name] else forDefault;
    local defSev = eff(c.defaultRole);
    local otherSevs = std.uniq(std.sort([eff(r) for r in roles if eff(r) != defSev], rank), function(s) rank(s));
    local sevLabel =
      if otherSevs == [] then defSev
      else '{{ if ' + std.join('{{ else if ', [
        'eq $labels.role ' + std.join(' ', ['"' + r + '"' for r in roles if eff(r) == s]) + ' }}' + s
        for s in otherSevs
      ]) + '{{ else }}' + defSev + '{{ end }}';
    local prio(r) = std.get(c.roles[r], 'priority', null);
    local defPrio = prio(c.defaultRole);
    local otherPrios = std.uniq(std.sort([prio(r) for r in roles if prio(r) != defPrio && prio(r) != null]));
    local prioLabel =
      if defPrio == null then {}
      else if otherPrios == [] then { priority: defPrio }
      else { priority: '{{ if ' + std.join('{{ else if ', [
        'eq $labels.role ' + std.join(' ', ['"' + r + '"' for r in roles if prio(r) == p]) + ' }}' + p
        for p in otherPrios
      ]) + '{{ else }}' + defPrio + '{{ end }}' };
    local fors = std.uniq(std.sort([forOf(r) for r in roles]));
    local E = util.indent(std.rstripChars(expr, '\n'));
    [
      local classRoles = [r for r in roles if forOf(r) == f];
      local otherRoles = [r for r in roles if forOf(r) != f];
      local isDefault = std.member(classRoles, c.defaultRole);
      local roleMatcher =
        if isDefault then (if otherRoles == [] then '' else 'role!~"' + std.join('|', otherRoles) + '"')
        else 'role=~"' + std.join('|', classRoles) + '"';
      local joined =
        '(\n' + E + '\n)\n* on (' + h.connectorKey + ') group_left (role)\n  ' + h.m(h.connectorRole, roleMatcher);
      // A connector without a role record (no info series) still alerts, with the default role.
      local full =
        if isDefault then
          '(\n' + util.indent(joined) + '\n)\nor\n(\n' + util.indent('(\n' + E + '\n)\nunless on (' + h.connectorKey + ')\n  ' + h.m(h.connectorRole)) + '\n)'
        else joined;
      local merged =
        if aggregate then 'max without (' + std.join(', ', c.haReplicaLabels) + ') (\n' + util.indent(full) + '\n)'
        else full;
      {
        alert: name,
        expr: merged + '\n',
        labels: labels + prioLabel + { severity: sevLabel },
        annotations: annotations,
      }
      + forField(f)
      + (
        if std.length(fors) > 1 then
          { '#':: (if comment == null then '' else comment + '\n') + 'Connectors with role ' + std.join(', ', classRoles) + (if isDefault then ' (and any other)' else '') + ': for ' + f + '.' }
        else if comment != null then { '#':: comment }
        else {}
      )
      for f in fors
    ],
}
