// Grafana dashboards. The panels are kept as JSON (dashboards/*.json, as Grafana exports them,
// without uid, title, tags, links and variables); this file adds those from the config and
// fills in two kinds of placeholders in every string of the panels:
//
//   __SELECTOR__     in expressions: the configured selector, job=~"$job", instance=~"$instance"
//   __URL_<name>__   in links: /d/<uid of that dashboard>
//
// Every query of every panel carries __SELECTOR__ (dashboards/check.py checks that the
// generated files filter every series on $job), so one job is shown at a time: two scrape jobs of
// the same agents never add up.
local util = import 'lib/util.libsonnet';

{
  grafanaDashboards+::
    local c = $._config;
    local h = (import 'lib/alerting.libsonnet')(c);
    local ds = { type: 'prometheus', uid: '${datasource}' };

    local names = ['overview', 'connector', 'certificates'];
    local sources = {
      overview: import 'dashboards/overview.json',
      connector: import 'dashboards/connector.json',
      certificates: import 'dashboards/certificates.json',
    };
    local titles = { overview: 'overview', connector: 'connector detail', certificates: 'certificates' };
    local titleOf(name) = c.dashboardTitlePrefix + titles[name];

    local selector = std.join(', ', [m for m in [c.selector, 'job=~"$job"', 'instance=~"$instance"'] if m != '']);
    local replacements = [['__SELECTOR__', selector]] + [['__URL_' + n + '__', '/d/' + h.dashboardUid(n)] for n in names];
    local fill(s) = std.foldl(function(acc, r) std.strReplace(acc, r[0], r[1]), replacements, s);
    local walk(v) =
      if std.isString(v) then fill(v)
      else if std.isArray(v) then [walk(x) for x in v]
      else if std.isObject(v) then { [k]: walk(v[k]) for k in std.objectFields(v) }
      else v;

    local queryVariable(name, label, description, query, all, multi) = {
      name: name,
      label: label,
      description: description,
      type: 'query',
      datasource: ds,
      definition: query,
      query: query,
      current: if all then { selected: true, text: ['All'], value: ['$__all'] } else {},
      hide: 0,
      includeAll: all,
      [if all then 'allValue']: '.+',
      multi: multi,
      options: [],
      refresh: 2,
      regex: '',
      skipUrlSync: false,
      sort: 1,
    };
    local sel(parts) = util.matchers([c.selector] + parts);
    local variables = [
      {
        name: 'datasource',
        label: 'Data source',
        type: 'datasource',
        query: 'prometheus',
        current: {},
        hide: 0,
        includeAll: false,
        multi: false,
        options: [],
        refresh: 1,
        regex: '',
        skipUrlSync: false,
      },
      queryVariable(
        'job', 'Job',
        'The Prometheus scrape job of the agents. One at a time: two jobs scraping the same agents would count every connector twice.',
        'label_values(mailflow_build_info%s, job)' % sel([]),
        all=false, multi=false,
      ),
      queryVariable(
        'instance', 'Agent',
        'The mailflow-exporter agents of the job (Prometheus `instance` label).',
        'label_values(mailflow_build_info%s, instance)' % sel(['job=~"$job"']),
        all=true, multi=false,
      ),
      queryVariable(
        'connector', 'Connector',
        'Outbound connectors configured on the selected agents.',
        'label_values(mailflow_connector_info%s, connector)' % sel(['job=~"$job"', 'instance=~"$instance"']),
        all=true, multi=true,
      ),
    ];

    local dashboard(name) =
      walk(sources[name]) {
        id: null,
        uid: h.dashboardUid(name),
        title: titleOf(name),
        tags: c.dashboardTags,
        templating: { list: variables },
        links: [
          {
            title: titleOf(other),
            type: 'link',
            url: '/d/' + h.dashboardUid(other),
            icon: 'dashboard',
            tooltip: titleOf(other),
            includeVars: true,
            keepTime: true,
            targetBlank: false,
            asDropdown: false,
            tags: [],
          }
          for other in names
          if other != name
        ],
      };

    {
      ['mailflow-' + name + '.json']: dashboard(name)
      for name in names
    },
}
