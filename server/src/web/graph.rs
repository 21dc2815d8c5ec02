//! The relations graph of the entity page, laid out on the server as SVG.
//!
//! The entity sits in the centre; its neighbours stand in columns on either
//! side, grouped by relation type. Each group hangs off one labelled trunk edge
//! (the relation type in a pill) that fans out to its nodes. "Upward" relations
//! (owner, system, parent, what it depends on) go left, "downward" ones (parts,
//! members, what it provides, what depends on it) go right. The layout is a pure
//! function of its input, so the same entity always draws the same picture.
//!
//! This module only computes geometry and text; `partials/entity_graph.html`
//! writes the SVG, so every piece of catalog text passes through askama's escaping.
//! It reads nothing from the catalog.

/// At most this many neighbours are drawn; the rest are counted as "+N more".
pub const MAX_NODES: usize = 30;

const MARGIN: i32 = 12;
const NODE_W: i32 = 184;
const NODE_H: i32 = 40;
const PITCH: i32 = 48;
const GROUP_GAP: i32 = 18;
const FAN_GAP: i32 = 28;
const PILL_COL: i32 = 112;
const PILL_H: i32 = 22;
const TRUNK_GAP: i32 = 36;
const CENTRE_W: i32 = 200;
const CENTRE_H: i32 = 52;
/// Characters that fit on one line of a node (bold 12.5px text, about 7.5
/// units a character); each node also clips its text, so wide letters cannot spill.
const NODE_CHARS: usize = 22;
const CENTRE_CHARS: usize = 24;

/// Relation types drawn left of the entity, in this order.
const LEFT: &[&str] = &[
    "ownedBy",
    "partOf",
    "childOf",
    "memberOf",
    "dependsOn",
    "consumesApi",
    "apiProvidedBy",
];
/// Relation types drawn right of the entity, in this order; unknown types follow.
const RIGHT: &[&str] = &[
    "hasPart",
    "ownerOf",
    "parentOf",
    "hasMember",
    "providesApi",
    "dependencyOf",
    "apiConsumedBy",
];

/// An entity as the graph shows it.
#[derive(Debug, Clone)]
pub struct GraphEntity {
    /// Where the node links to.
    pub href: String,
    /// The kind as written in the entity (`Component`).
    pub kind: String,
    /// Title, or name.
    pub label: String,
    /// The full ref, for the tooltip.
    pub entity_ref: String,
}

/// The neighbours over one relation type, from the centre's point of view.
#[derive(Debug, Clone)]
pub struct RelationGroup {
    pub relation: String,
    /// The candidates for drawing; callers may pass only the first [`MAX_NODES`].
    pub members: Vec<GraphEntity>,
    /// How many neighbours the relation has in all.
    pub total: usize,
}

/// A drawn node.
#[derive(Debug, Clone)]
pub struct NodeBox {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
    pub href: String,
    pub kind: String,
    /// The label, shortened to fit.
    pub label: String,
    /// The tooltip and accessible name: relation, kind, full label and ref.
    pub tooltip: String,
    /// Where the two lines of text start, inside the node's own clipping viewport.
    pub text_x: i32,
    pub kind_y: i32,
    pub label_y: i32,
    /// The clipping viewport's width: the node less its padding.
    pub clip_w: i32,
}

/// An edge: a trunk from the centre to a relation's label, or a branch from
/// the label to a neighbour (which ends in an arrow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// SVG path data.
    pub d: String,
    pub arrow: bool,
}

/// A relation type's label, drawn on its trunk edge.
#[derive(Debug, Clone)]
pub struct Pill {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
    pub text: String,
    pub text_x: i32,
    pub text_y: i32,
}

/// Text standing in for a group's undrawn nodes.
#[derive(Debug, Clone)]
pub struct More {
    pub x: i32,
    pub y: i32,
    pub text: String,
}

/// The laid-out graph, ready for the template.
#[derive(Debug, Clone)]
pub struct Graph {
    /// `min-x min-y width height`.
    pub view_box: String,
    pub width: i32,
    pub height: i32,
    /// What the picture shows, in words: its title and aria-label.
    pub summary: String,
    pub centre: NodeBox,
    pub nodes: Vec<NodeBox>,
    pub edges: Vec<Edge>,
    pub pills: Vec<Pill>,
    pub more: Vec<More>,
    /// Neighbours in total, drawn or not.
    pub total: usize,
}

struct Group {
    relation: String,
    members: Vec<GraphEntity>,
    total: usize,
    shown: usize,
}

impl Group {
    fn hidden(&self) -> usize {
        self.total.saturating_sub(self.shown)
    }

    /// Rows the group takes: its nodes, and one for "+N more".
    fn rows(&self) -> i32 {
        let rows = self.shown + usize::from(self.hidden() > 0);
        i32::try_from(rows).unwrap_or(i32::MAX / PITCH)
    }

    fn height(&self) -> i32 {
        self.rows() * PITCH - (PITCH - NODE_H)
    }
}

fn side_rank(relation: &str) -> (u8, usize) {
    if let Some(i) = LEFT.iter().position(|r| *r == relation) {
        (0, i)
    } else if let Some(i) = RIGHT.iter().position(|r| *r == relation) {
        (1, i)
    } else {
        (1, RIGHT.len())
    }
}

/// Lays out `centre` and its neighbours.
pub fn layout(centre: &GraphEntity, relations: Vec<RelationGroup>) -> Graph {
    let mut groups = group(relations);
    let total = groups.iter().map(|g| g.total).sum();
    allocate(&mut groups, MAX_NODES);
    let (left, right): (Vec<Group>, Vec<Group>) = groups
        .into_iter()
        .partition(|g| side_rank(&g.relation).0 == 0);

    let side_height = |gs: &[Group]| -> i32 {
        let n = i32::try_from(gs.len()).unwrap_or(0);
        gs.iter().map(Group::height).sum::<i32>() + (n - 1).max(0) * GROUP_GAP
    };
    let inner = side_height(&left).max(side_height(&right)).max(CENTRE_H);
    let height = inner + 2 * MARGIN;
    let mid = MARGIN + inner / 2;

    // Columns, left to right.
    let left_nodes = 0;
    let left_pills = left_nodes + NODE_W + FAN_GAP;
    let centre_x = left_pills + PILL_COL + TRUNK_GAP;
    let right_pills = centre_x + CENTRE_W + TRUNK_GAP;
    let right_nodes = right_pills + PILL_COL + FAN_GAP;
    let min_x = if left.is_empty() {
        centre_x
    } else {
        left_nodes
    } - MARGIN;
    let max_x = if right.is_empty() {
        centre_x + CENTRE_W
    } else {
        right_nodes + NODE_W
    } + MARGIN;

    let centre_box = node_box(
        centre,
        None,
        centre_x,
        mid - CENTRE_H / 2,
        CENTRE_W,
        CENTRE_H,
        CENTRE_CHARS,
    );
    let mut graph = Graph {
        view_box: format!("{min_x} 0 {} {height}", max_x - min_x),
        width: max_x - min_x,
        height,
        summary: String::new(),
        centre: centre_box,
        nodes: Vec::new(),
        edges: Vec::new(),
        pills: Vec::new(),
        more: Vec::new(),
        total,
    };
    let columns = [
        (left, Side::Left, left_nodes, left_pills),
        (right, Side::Right, right_nodes, right_pills),
    ];
    for (groups, side, nodes_x, pills_x) in columns {
        let mut y = mid - side_height(&groups) / 2;
        let trunk_x = match side {
            Side::Left => centre_x,
            Side::Right => centre_x + CENTRE_W,
        };
        for g in &groups {
            draw_group(&mut graph, g, side, nodes_x, pills_x, trunk_x, mid, y);
            y += g.height() + GROUP_GAP;
        }
    }
    let shown = graph.nodes.len();
    graph.summary = match (total, shown < total) {
        (0, _) => format!("{}: no relations", centre.label),
        (n, false) => format!(
            "Relations of {}: {n} related {}",
            centre.label,
            plural(n, "entity", "entities")
        ),
        (n, true) => format!(
            "Relations of {}: {n} related entities, {shown} drawn",
            centre.label
        ),
    };
    graph
}

#[derive(Clone, Copy)]
enum Side {
    Left,
    Right,
}

#[allow(clippy::too_many_arguments)]
fn draw_group(
    graph: &mut Graph,
    g: &Group,
    side: Side,
    nodes_x: i32,
    pills_x: i32,
    trunk_x: i32,
    mid: i32,
    top: i32,
) {
    let group_mid = top + g.height() / 2;
    let pill_w = pill_width(&g.relation);
    let pill_x = pills_x + (PILL_COL - pill_w) / 2;
    // Trunk: from the centre's side to the pill.
    let (trunk_end, fan_start, fan_end) = match side {
        Side::Left => (pill_x + pill_w, pill_x, nodes_x + NODE_W),
        Side::Right => (pill_x, pill_x + pill_w, nodes_x),
    };
    graph.edges.push(Edge {
        d: curve(trunk_x, mid, trunk_end, group_mid),
        arrow: false,
    });
    graph.pills.push(Pill {
        x: pill_x,
        y: group_mid - PILL_H / 2,
        w: pill_w,
        h: PILL_H,
        text: g.relation.clone(),
        text_x: pill_x + pill_w / 2,
        text_y: group_mid + 4,
    });
    for (i, member) in g.members.iter().take(g.shown).enumerate() {
        let y = top + i32::try_from(i).unwrap_or(0) * PITCH;
        graph.edges.push(Edge {
            d: curve(fan_start, group_mid, fan_end, y + NODE_H / 2),
            arrow: true,
        });
        graph.nodes.push(node_box(
            member,
            Some(&g.relation),
            nodes_x,
            y,
            NODE_W,
            NODE_H,
            NODE_CHARS,
        ));
    }
    let hidden = g.hidden();
    if hidden > 0 {
        let y = top + (g.rows() - 1) * PITCH;
        graph.more.push(More {
            x: nodes_x + 10,
            y: y + NODE_H / 2 + 4,
            text: format!("+{hidden} more"),
        });
    }
}

/// Merges groups of the same relation type, puts them in side and rank order,
/// and sorts each by kind and label.
fn group(relations: Vec<RelationGroup>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for r in relations.into_iter().filter(|r| r.total > 0) {
        match groups.iter_mut().find(|g| g.relation == r.relation) {
            Some(g) => {
                g.members.extend(r.members);
                g.total += r.total;
            }
            None => groups.push(Group {
                relation: r.relation,
                members: r.members,
                total: r.total,
                shown: 0,
            }),
        }
    }
    groups.sort_by(|a, b| {
        side_rank(&a.relation)
            .cmp(&side_rank(&b.relation))
            .then_with(|| a.relation.cmp(&b.relation))
    });
    for g in &mut groups {
        g.members.sort_by(|a, b| {
            (a.kind.to_lowercase(), a.label.to_lowercase(), &a.entity_ref).cmp(&(
                b.kind.to_lowercase(),
                b.label.to_lowercase(),
                &b.entity_ref,
            ))
        });
        g.members.dedup_by(|a, b| a.entity_ref == b.entity_ref);
        g.total = g.total.max(g.members.len());
    }
    groups
}

/// Shares `cap` node slots between groups a slot at a time, so that a large
/// group does not crowd the others out.
fn allocate(groups: &mut [Group], cap: usize) {
    let mut left = cap;
    loop {
        let mut progressed = false;
        for g in groups.iter_mut() {
            if left > 0 && g.shown < g.members.len() {
                g.shown += 1;
                left -= 1;
                progressed = true;
            }
        }
        if !progressed || left == 0 {
            break;
        }
    }
}

fn node_box(
    e: &GraphEntity,
    relation: Option<&str>,
    x: i32,
    y: i32,
    w: i32,
    h: i32,
    chars: usize,
) -> NodeBox {
    let tooltip = match relation {
        Some(rel) => format!("{rel}: {} {} ({})", e.kind, e.label, e.entity_ref),
        None => format!("{} {} ({})", e.kind, e.label, e.entity_ref),
    };
    NodeBox {
        x,
        y,
        w,
        h,
        href: e.href.clone(),
        kind: shorten(&e.kind, chars),
        label: shorten(&e.label, chars),
        tooltip,
        text_x: 10,
        kind_y: h / 2 - 4,
        label_y: h / 2 + 11,
        clip_w: w - 6,
    }
}

/// A pill wide enough for its text (11px, about 6.4 units a character).
fn pill_width(text: &str) -> i32 {
    let chars = i32::try_from(text.chars().count()).unwrap_or(i32::MAX);
    (chars.saturating_mul(64) / 10 + 16).min(PILL_COL)
}

/// A horizontal S-curve between two points.
fn curve(x0: i32, y0: i32, x1: i32, y1: i32) -> String {
    let mx = (x0 + x1) / 2;
    format!("M{x0} {y0}C{mx} {y0} {mx} {y1} {x1} {y1}")
}

/// Cuts text to `max` characters, ending in an ellipsis when cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(kind: &str, name: &str) -> GraphEntity {
        GraphEntity {
            href: format!("/catalog/default/{}/{name}", kind.to_lowercase()),
            kind: kind.into(),
            label: name.into(),
            entity_ref: format!("{}:default/{name}", kind.to_lowercase()),
        }
    }

    fn n(relation: &str, kind: &str, name: &str) -> RelationGroup {
        RelationGroup {
            relation: relation.into(),
            members: vec![entity(kind, name)],
            total: 1,
        }
    }

    #[test]
    fn lone_entity_is_just_the_centre() {
        let g = layout(&entity("Component", "svc"), vec![]);
        assert!(g.nodes.is_empty() && g.edges.is_empty());
        assert_eq!(g.width, CENTRE_W + 2 * MARGIN);
        assert!(g.summary.contains("no relations"));
    }

    #[test]
    fn sides_follow_the_relation_type() {
        let g = layout(
            &entity("Component", "svc"),
            vec![
                n("dependencyOf", "Component", "web"),
                n("ownedBy", "Group", "team-a"),
                n("partOf", "System", "shop"),
            ],
        );
        let centre_x = g.centre.x;
        let x_of = |name: &str| {
            g.nodes
                .iter()
                .find(|b| b.label == name)
                .map(|b| b.x)
                .expect("drawn")
        };
        assert!(x_of("team-a") < centre_x && x_of("shop") < centre_x);
        assert!(x_of("web") > centre_x);
        assert_eq!(g.pills.len(), 3);
        // One trunk per group and one edge per node.
        assert_eq!(g.edges.len(), 6);
        assert!(g.summary.contains("3 related entities"));
    }

    #[test]
    fn same_input_same_picture_whatever_the_order() {
        let a = vec![
            n("hasPart", "Component", "b"),
            n("hasPart", "API", "a"),
            n("ownedBy", "Group", "g"),
        ];
        let mut b = a.clone();
        b.reverse();
        let ga = layout(&entity("System", "s"), a);
        let gb = layout(&entity("System", "s"), b);
        assert_eq!(ga.edges, gb.edges);
        let labels = |g: &Graph| g.nodes.iter().map(|n| n.label.clone()).collect::<Vec<_>>();
        assert_eq!(labels(&ga), labels(&gb));
        assert_eq!(labels(&ga), vec!["g", "a", "b"]);
    }

    #[test]
    fn nodes_are_capped_and_shared_between_groups() {
        let mut ns: Vec<RelationGroup> = (0..50)
            .map(|i| n("ownerOf", "Component", &format!("c{i:02}")))
            .collect();
        ns.push(n("childOf", "Group", "parent"));
        ns.push(n("hasMember", "User", "ann"));
        let g = layout(&entity("Group", "team"), ns);
        assert_eq!(g.nodes.len(), MAX_NODES);
        assert!(g.nodes.iter().any(|b| b.label == "parent"));
        assert!(g.nodes.iter().any(|b| b.label == "ann"));
        assert_eq!(g.more.len(), 1);
        assert_eq!(g.more[0].text, "+22 more");
        assert_eq!(g.total, 52);
        assert!(g.summary.contains("30 drawn"));
    }

    #[test]
    fn neighbours_the_caller_left_out_are_counted() {
        let g = layout(
            &entity("Group", "team"),
            vec![RelationGroup {
                relation: "ownerOf".into(),
                members: (0..MAX_NODES)
                    .map(|i| entity("Component", &format!("c{i:03}")))
                    .collect(),
                total: 500,
            }],
        );
        assert_eq!(g.nodes.len(), MAX_NODES);
        assert_eq!(g.total, 500);
        assert_eq!(g.more[0].text, format!("+{} more", 500 - MAX_NODES));
    }

    #[test]
    fn long_labels_are_shortened() {
        let long = "a-very-long-component-name-that-does-not-fit";
        let g = layout(
            &entity("Component", "svc"),
            vec![n("dependsOn", "Component", long)],
        );
        assert_eq!(g.nodes[0].label.chars().count(), NODE_CHARS);
        assert!(g.nodes[0].label.ends_with('…'));
        assert!(g.nodes[0].tooltip.contains(long));
    }

    #[test]
    fn the_view_box_covers_every_node() {
        let g = layout(
            &entity("Component", "svc"),
            vec![
                n("ownedBy", "Group", "g"),
                n("dependencyOf", "Component", "x"),
            ],
        );
        let parts: Vec<i32> = g
            .view_box
            .split(' ')
            .map(|p| p.parse().expect("number"))
            .collect();
        let (min_x, w, h) = (parts[0], parts[2], parts[3]);
        for b in g.nodes.iter().chain(std::iter::once(&g.centre)) {
            assert!(b.x >= min_x && b.x + b.w <= min_x + w, "{b:?}");
            assert!(b.y >= 0 && b.y + b.h <= h, "{b:?}");
        }
    }
}
