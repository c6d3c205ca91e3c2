//! What a socket (or a publish API key) may do: lists of exact names or Redis-style
//! glob patterns (`*`, `?`, `[a-z]`) for namespaces, rooms to join, rooms to publish to.

use serde_json::Value as Json;

use crate::datasource::glob;

/// Exact names and glob patterns; empty allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns(Vec<String>);

impl Patterns {
    /// From a list of strings.
    pub fn new(list: impl IntoIterator<Item = impl Into<String>>) -> Patterns {
        Patterns(list.into_iter().map(Into::into).collect())
    }

    /// Whether `name` is one of them or matches one.
    pub fn allows(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|p| p == name || glob::matches(p.as_bytes(), name.as_bytes()))
    }

    /// Whether the whole namespace is allowed: only the pattern `*` says so.
    pub fn allows_all(&self) -> bool {
        self.0.iter().any(|p| p == "*")
    }

    /// From a claim's field: absent is `default`, else a list of strings.
    fn field(claim: &Json, name: &str, default: Patterns) -> Result<Patterns, String> {
        match claim.get(name) {
            None | Some(Json::Null) => Ok(default),
            Some(Json::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("`{name}` must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Patterns),
            Some(_) => Err(format!("`{name}` must be a list of strings")),
        }
    }
}

/// A socket's rights, from its token's claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    /// Namespaces it may connect to (absent from the claim: every served one).
    pub namespaces: Patterns,
    /// Rooms it may join (absent: none).
    pub join: Patterns,
    /// Rooms it may publish to; `*` also allows a publish to the whole namespace
    /// (absent: none).
    pub publish: Patterns,
}

impl Rights {
    /// Reads the rights claim `{"namespaces"?, "join"?, "publish"?}`; a token without
    /// the claim may connect and do nothing else.
    pub fn from_claim(claim: Option<&Json>) -> Result<Rights, String> {
        let empty = Json::Object(Default::default());
        let claim = claim.unwrap_or(&empty);
        if !claim.is_object() {
            return Err("the rights claim must be an object".into());
        }
        Ok(Rights {
            namespaces: Patterns::field(claim, "namespaces", Patterns::new(["*"]))?,
            join: Patterns::field(claim, "join", Patterns::default())?,
            publish: Patterns::field(claim, "publish", Patterns::default())?,
        })
    }

    /// The first of `rooms` it may not join.
    pub fn join_refused<'a>(&self, rooms: &'a [String]) -> Option<&'a str> {
        rooms
            .iter()
            .find(|r| !self.join.allows(r))
            .map(String::as_str)
    }

    /// Why it may not publish to `rooms` (`None`: the whole namespace), if it may not.
    pub fn publish_refused(&self, rooms: Option<&[String]>) -> Option<String> {
        match rooms {
            None if self.publish.allows_all() => None,
            None => Some("publishing to the whole namespace is not allowed".into()),
            Some(rooms) => rooms
                .iter()
                .find(|r| !self.publish.allows(r))
                .map(|r| format!("publishing to room `{r}` is not allowed")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_grant_exact_names_and_patterns() {
        let claim = json!({"join": ["lobby", "user:42:*"], "publish": ["chat:*"]});
        let r = Rights::from_claim(Some(&claim)).unwrap();
        assert!(
            r.namespaces.allows("/any"),
            "no namespaces field: every one"
        );
        let rooms = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(r.join_refused(&rooms(&["lobby", "user:42:inbox"])), None);
        assert_eq!(
            r.join_refused(&rooms(&["lobby", "user:43:inbox"])),
            Some("user:43:inbox")
        );
        assert_eq!(r.publish_refused(Some(&rooms(&["chat:1"]))), None);
        assert!(r.publish_refused(Some(&rooms(&["lobby"]))).is_some());
        assert!(
            r.publish_refused(None).is_some(),
            "the whole namespace needs `*`"
        );
        let all = Rights::from_claim(Some(&json!({"publish": ["*"]}))).unwrap();
        assert_eq!(all.publish_refused(None), None);
    }

    #[test]
    fn no_claim_grants_nothing_but_connecting() {
        let r = Rights::from_claim(None).unwrap();
        assert!(r.namespaces.allows("/"));
        assert!(r.join_refused(&["a".into()]).is_some());
        assert!(r.publish_refused(Some(&["a".into()])).is_some());
        let e = Rights::from_claim(Some(&json!({"join": "lobby"}))).unwrap_err();
        assert!(e.contains("list of strings"), "{e}");
        let ns = Rights::from_claim(Some(&json!({"namespaces": ["/chat"]}))).unwrap();
        assert!(ns.namespaces.allows("/chat") && !ns.namespaces.allows("/"));
    }
}
