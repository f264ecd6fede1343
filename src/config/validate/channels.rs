//! `history` and `channels`: history bounds, channel rules and their policies.

use super::*;

impl Checker<'_> {
    /// `history:` keys over `base`, key by key (so a channel rule may set only one of them).
    pub(super) fn history(
        &mut self,
        key: &str,
        raw: RawHistory,
        base: HistoryLimits,
    ) -> HistoryLimits {
        let RawHistory {
            max_events,
            max_age,
        } = raw;
        HistoryLimits {
            max_events: self.count(
                &format!("{key}.max_events"),
                max_events.as_ref(),
                0,
                base.max_events,
            ),
            max_age: self.duration(&format!("{key}.max_age"), max_age.as_ref(), base.max_age),
        }
    }

    pub(super) fn channels(
        &mut self,
        raw: Vec<Spanned<RawChannel>>,
        history: HistoryLimits,
    ) -> Vec<ChannelRule> {
        let mut seen: Vec<ChannelPattern> = Vec::new();
        let mut rules = Vec::with_capacity(raw.len());
        for (i, entry) in raw.into_iter().enumerate() {
            let at = format!("channels[{i}]");
            let RawChannel {
                name,
                subscribe,
                publish,
                history: rule_history,
            } = entry.value;
            let Some(name) = name else {
                self.at(
                    Pos::of(entry.referenced),
                    format!("{at}: missing `name` (a channel name, or a prefix ending in *)"),
                );
                continue;
            };
            let Some(pattern) = self.pattern(&format!("{at}.name"), &name) else {
                continue;
            };
            if seen.contains(&pattern) {
                self.err(
                    &name,
                    format!(
                        "{at}.name: {:?} is already listed above; only the first rule for a \
                         channel applies",
                        name.value
                    ),
                );
            }
            seen.push(pattern.clone());
            rules.push(ChannelRule {
                pattern,
                subscribe: self.policy(&format!("{at}.subscribe"), subscribe.as_ref()),
                publish: self.policy(&format!("{at}.publish"), publish.as_ref()),
                history: self.history(
                    &format!("{at}.history"),
                    rule_history.unwrap_or_default(),
                    history,
                ),
            });
        }
        rules
    }

    pub(super) fn policy(&mut self, key: &str, value: Option<&Spanned<String>>) -> Policy {
        self.one_of(
            key,
            value,
            &[
                ("public", Policy::Public),
                ("authenticated", Policy::Authenticated),
                ("claims", Policy::Claims),
            ],
            Policy::Claims,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn channel_patterns() {
        let config =
            load_ok("channels:\n  - name: \"user.*\"\n  - name: \"*\"\n  - name: a.b:c/d-e_f\n");
        let patterns: Vec<_> = config.channels.iter().map(|r| r.pattern.clone()).collect();
        assert_eq!(
            patterns,
            [
                ChannelPattern::Prefix("user.".into()),
                ChannelPattern::Prefix(String::new()),
                ChannelPattern::Exact("a.b:c/d-e_f".into()),
            ]
        );
        for bad in ["\"a*b\"", "\"**\"", "\"\"", "a b", "é"] {
            let text = format!("channels: [{{name: {bad}}}]");
            one_problem(&text, "1:19: channels[0].name: invalid channel pattern");
        }
        let long = "x".repeat(129);
        one_problem(
            &format!("channels: [{{name: {long}}}]"),
            "1:19: channels[0].name: invalid channel pattern",
        );
        one_problem(
            "channels:\n  - {name: a}\n  - {name: a}\n",
            "3:12: channels[1].name: \"a\" is already listed above",
        );
        one_problem(
            "channels:\n  - subscribe: public\n",
            "2:5: channels[0]: missing `name`",
        );
    }

    #[test]
    fn policies_and_heartbeat() {
        let config = load_ok(
            "sse: {heartbeat: event}\nchannels:\n  - {name: a, subscribe: authenticated}\n",
        );
        assert_eq!(config.sse.heartbeat, HeartbeatKind::Event);
        let rule = &config.channels[0];
        assert_eq!(
            (rule.subscribe, rule.publish),
            (Policy::Authenticated, Policy::Claims)
        );
        let found = problems("sse: {heartbeat: ping}\nchannels: [{name: a, publish: anyone}]\n");
        assert_eq!(
            found,
            [
                "1:18: sse.heartbeat: unknown value \"ping\": expected one of comment, event",
                "2:31: channels[0].publish: unknown value \"anyone\": expected one of public, \
                 authenticated, claims",
            ]
        );
    }
}
