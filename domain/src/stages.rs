//! Phases and components: the declared stages of runs that are not counted.

use crate::{InvalidValue, RunError, Timestamp};

fn check_key(what: &'static str, key: &str) -> Result<(), InvalidValue> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(InvalidValue::new(
            what,
            "key must be 1 to 64 characters of a-z, 0-9 and '_', starting with a letter",
        ))
    }
}

fn check_label(what: &'static str, label: &str) -> Result<(), InvalidValue> {
    if label.trim().is_empty() || label.len() > 100 {
        return Err(InvalidValue::new(
            what,
            "label must be 1 to 100 bytes of text",
        ));
    }
    Ok(())
}

/// One declared phase of a phased run, e.g. `capture_evidence` / "Capturing evidence".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    key: String,
    label: String,
}

impl Phase {
    /// A phase with a snake_case key and a human label.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when the key or label breaks its rule.
    pub fn try_new(key: &str, label: &str) -> Result<Self, InvalidValue> {
        check_key("phase", key)?;
        check_label("phase", label)?;
        Ok(Self {
            key: key.to_owned(),
            label: label.to_owned(),
        })
    }

    /// The phase key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The phase label.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// The ordered phases of a run and the current one; phases only move forward.
///
/// ```
/// use opsrun_domain::{Phase, Phases};
/// let mut phases = Phases::try_new(vec![
///     Phase::try_new("resolve_scope", "Resolving scope").unwrap(),
///     Phase::try_new("capture_evidence", "Capturing evidence").unwrap(),
/// ]).unwrap();
/// phases.enter("capture_evidence").unwrap();
/// assert!(phases.enter("resolve_scope").is_err());
/// assert_eq!(phases.current().map(|(i, p)| (i, p.key())), Some((1, "capture_evidence")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phases {
    list: Vec<Phase>,
    current: Option<usize>,
    /// When each phase was entered, where that was recorded (surfaces show per-phase
    /// durations from it; phases entered without a time have none).
    entered: Vec<Option<Timestamp>>,
}

impl Phases {
    /// Declares phases (1 to 20, distinct keys), none entered yet.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when the list is empty, too long or repeats a key.
    pub fn try_new(list: Vec<Phase>) -> Result<Self, InvalidValue> {
        if list.is_empty() || list.len() > 20 {
            return Err(InvalidValue::new("phases", "must declare 1 to 20 phases"));
        }
        let mut keys: Vec<_> = list.iter().map(Phase::key).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.len() != list.len() {
            return Err(InvalidValue::new("phases", "phase keys must be distinct"));
        }
        let entered = vec![None; list.len()];
        Ok(Self {
            list,
            current: None,
            entered,
        })
    }

    /// Rebuilds phases from storage with their current index (ignored when out of range).
    ///
    /// # Errors
    ///
    /// As [`Phases::try_new`].
    pub fn restore(list: Vec<Phase>, current: Option<usize>) -> Result<Self, InvalidValue> {
        let mut phases = Self::try_new(list)?;
        phases.current = current.filter(|i| *i < phases.list.len());
        Ok(phases)
    }

    /// The same phases with the times their phases were entered (from storage; a list of
    /// another length is ignored).
    #[must_use]
    pub fn with_entered(mut self, entered: Vec<Option<Timestamp>>) -> Self {
        if entered.len() == self.list.len() {
            self.entered = entered;
        }
        self
    }

    /// The declared phases.
    #[must_use]
    pub fn list(&self) -> &[Phase] {
        &self.list
    }

    /// When each declared phase was entered, where recorded (same order as [`Self::list`]).
    #[must_use]
    pub fn entered(&self) -> &[Option<Timestamp>] {
        &self.entered
    }

    /// The current phase with its 0-based index, once one is entered.
    #[must_use]
    pub fn current(&self) -> Option<(usize, &Phase)> {
        self.current.and_then(|i| self.list.get(i).map(|p| (i, p)))
    }

    /// The 0-based index of the current phase.
    #[must_use]
    pub fn current_index(&self) -> Option<usize> {
        self.current
    }

    /// Enters the phase `key`; returns whether anything changed.
    ///
    /// # Errors
    ///
    /// [`RunError::UnknownPhase`] for an undeclared key, [`RunError::PhaseRegressed`] for a
    /// phase before the current one.
    pub fn enter(&mut self, key: &str) -> Result<bool, RunError> {
        self.enter_phase(key, None)
    }

    /// As [`Self::enter`], recording `at` as the time the phase was entered (a phase entered
    /// again keeps its first time).
    ///
    /// # Errors
    ///
    /// As [`Self::enter`].
    pub fn enter_at(&mut self, key: &str, at: Timestamp) -> Result<bool, RunError> {
        self.enter_phase(key, Some(at))
    }

    fn enter_phase(&mut self, key: &str, at: Option<Timestamp>) -> Result<bool, RunError> {
        let index =
            self.list
                .iter()
                .position(|p| p.key == key)
                .ok_or_else(|| RunError::UnknownPhase {
                    key: key.to_owned(),
                })?;
        match self.current {
            Some(current) if index < current => Err(RunError::PhaseRegressed {
                from: self.list[current].key.clone(),
                to: key.to_owned(),
            }),
            Some(current) if index == current => Ok(false),
            _ => {
                self.current = Some(index);
                if let Some(slot) = self.entered.get_mut(index)
                    && slot.is_none()
                {
                    *slot = at;
                }
                Ok(true)
            }
        }
    }

    fn same_declaration(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

/// The state of one component of a composite run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentState {
    /// Not started.
    Pending,
    /// Working without a deterministic unit count.
    Activity {
        /// Units processed, when known.
        processed: Option<u64>,
    },
    /// Working through declared phases.
    Phased(Phases),
    /// Working through a deterministic number of units.
    Counted {
        /// Units processed.
        processed: u64,
        /// Units in the component's frozen work set.
        total: u64,
    },
    /// Finished.
    Done,
}

impl ComponentState {
    fn rank(&self) -> u8 {
        match self {
            Self::Pending => 0,
            Self::Activity { .. } => 1,
            Self::Phased(_) | Self::Counted { .. } => 2,
            Self::Done => 3,
        }
    }

    /// Checks that moving from `self` to `next` keeps the component's progress truthful.
    pub(crate) fn check_move(&self, key: &str, next: &Self) -> Result<(), RunError> {
        let regressed = || RunError::ComponentRegressed {
            key: key.to_owned(),
        };
        if let Self::Counted { processed, total } = next
            && processed > total
        {
            return Err(RunError::ProcessedExceedsTotal {
                processed: *processed,
                adding: 0,
                total: *total,
            });
        }
        match (self, next) {
            (
                Self::Counted { processed, total },
                Self::Counted {
                    processed: p2,
                    total: t2,
                },
            ) => {
                if t2 != total {
                    return Err(RunError::TotalAlreadySet {
                        current: *total,
                        requested: *t2,
                    });
                }
                if p2 < processed {
                    return Err(regressed());
                }
                Ok(())
            }
            (Self::Phased(a), Self::Phased(b)) => {
                if !a.same_declaration(b) {
                    return Err(RunError::StagesAlreadyDeclared);
                }
                match (a.current, b.current) {
                    (Some(x), Some(y)) if y < x => Err(RunError::PhaseRegressed {
                        from: a.list[x].key.clone(),
                        to: b.list[y].key.clone(),
                    }),
                    (Some(_), None) => Err(regressed()),
                    _ => Ok(()),
                }
            }
            (Self::Activity { processed: Some(a) }, Self::Activity { processed: b }) => {
                if b.is_none_or(|b| b < *a) {
                    return Err(regressed());
                }
                Ok(())
            }
            (Self::Counted { .. } | Self::Phased(_), Self::Activity { .. })
            | (Self::Counted { .. }, Self::Phased(_))
            | (Self::Phased(_), Self::Counted { .. }) => Err(regressed()),
            _ if next.rank() < self.rank() => Err(regressed()),
            _ => Ok(()),
        }
    }
}

/// One declared component of a composite run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    key: String,
    label: String,
    state: ComponentState,
}

impl Component {
    /// A pending component with a snake_case key and a human label.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when the key or label breaks its rule.
    pub fn try_new(key: &str, label: &str) -> Result<Self, InvalidValue> {
        check_key("component", key)?;
        check_label("component", label)?;
        Ok(Self {
            key: key.to_owned(),
            label: label.to_owned(),
            state: ComponentState::Pending,
        })
    }

    /// A component rebuilt from storage with its state.
    ///
    /// # Errors
    ///
    /// As [`Component::try_new`].
    pub fn restore(key: &str, label: &str, state: ComponentState) -> Result<Self, InvalidValue> {
        let mut component = Self::try_new(key, label)?;
        component.state = state;
        Ok(component)
    }

    /// The component key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The component label.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The component's state.
    #[must_use]
    pub fn state(&self) -> &ComponentState {
        &self.state
    }
}

/// The declared components of a composite run and which one is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Components {
    list: Vec<Component>,
    current: Option<usize>,
}

impl Components {
    /// Declares components (1 to 10, distinct keys), all pending.
    ///
    /// # Errors
    ///
    /// [`InvalidValue`] when the list is empty, too long or repeats a key.
    pub fn try_new(list: Vec<Component>) -> Result<Self, InvalidValue> {
        Self::restore(list, None)
    }

    /// Rebuilds components from storage (the current index is ignored when out of range).
    ///
    /// # Errors
    ///
    /// As [`Components::try_new`].
    pub fn restore(list: Vec<Component>, current: Option<usize>) -> Result<Self, InvalidValue> {
        if list.is_empty() || list.len() > 10 {
            return Err(InvalidValue::new(
                "components",
                "must declare 1 to 10 components",
            ));
        }
        let mut keys: Vec<_> = list.iter().map(Component::key).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.len() != list.len() {
            return Err(InvalidValue::new(
                "components",
                "component keys must be distinct",
            ));
        }
        let current = current.filter(|i| *i < list.len());
        Ok(Self { list, current })
    }

    /// The declared components.
    #[must_use]
    pub fn list(&self) -> &[Component] {
        &self.list
    }

    /// The 0-based index of the component last updated.
    #[must_use]
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// Moves component `key` to `state` and makes it current; returns whether anything changed.
    pub(crate) fn update(&mut self, key: &str, state: ComponentState) -> Result<bool, RunError> {
        let index = self.list.iter().position(|c| c.key == key).ok_or_else(|| {
            RunError::UnknownComponent {
                key: key.to_owned(),
            }
        })?;
        let component = &mut self.list[index];
        component.state.check_move(key, &state)?;
        let changed = component.state != state || self.current != Some(index);
        component.state = state;
        self.current = Some(index);
        Ok(changed)
    }

    pub(crate) fn same_declaration(&self, other: &Self) -> bool {
        self.list.len() == other.list.len()
            && self
                .list
                .iter()
                .zip(&other.list)
                .all(|(a, b)| a.key == b.key && a.label == b.label)
    }
}

impl Phases {
    pub(crate) fn same_list(&self, other: &Self) -> bool {
        self.same_declaration(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phases() -> Phases {
        Phases::try_new(vec![
            Phase::try_new("one", "One").unwrap(),
            Phase::try_new("two", "Two").unwrap(),
            Phase::try_new("three", "Three").unwrap(),
        ])
        .unwrap()
    }

    #[test]
    fn phases_refuse_repeated_keys_and_empty_lists() {
        assert!(Phases::try_new(vec![]).is_err());
        let a = Phase::try_new("a", "A").unwrap();
        assert!(Phases::try_new(vec![a.clone(), a]).is_err());
        assert!(Phase::try_new("Bad Key", "x").is_err());
    }

    #[test]
    fn phases_move_forward_skip_ahead_and_never_back() {
        let mut p = phases();

        assert_eq!(p.enter("one"), Ok(true));
        assert_eq!(p.enter("one"), Ok(false));
        assert_eq!(p.enter("three"), Ok(true));

        assert_eq!(
            p.enter("two"),
            Err(RunError::PhaseRegressed {
                from: "three".into(),
                to: "two".into()
            })
        );
        assert_eq!(
            p.enter("four"),
            Err(RunError::UnknownPhase { key: "four".into() })
        );
    }

    #[test]
    fn counted_component_cannot_pass_its_total_change_it_or_go_back() {
        let from = ComponentState::Counted {
            processed: 3,
            total: 5,
        };

        let over = from.check_move(
            "c",
            &ComponentState::Counted {
                processed: 6,
                total: 5,
            },
        );
        let retotal = from.check_move(
            "c",
            &ComponentState::Counted {
                processed: 3,
                total: 6,
            },
        );
        let back = from.check_move(
            "c",
            &ComponentState::Counted {
                processed: 2,
                total: 5,
            },
        );
        let to_activity = from.check_move("c", &ComponentState::Activity { processed: None });

        assert!(matches!(over, Err(RunError::ProcessedExceedsTotal { .. })));
        assert!(matches!(retotal, Err(RunError::TotalAlreadySet { .. })));
        assert!(matches!(back, Err(RunError::ComponentRegressed { .. })));
        assert!(matches!(
            to_activity,
            Err(RunError::ComponentRegressed { .. })
        ));
        assert_eq!(from.check_move("c", &ComponentState::Done), Ok(()));
    }

    #[test]
    fn done_component_stays_done() {
        let result = ComponentState::Done.check_move("c", &ComponentState::Pending);

        assert_eq!(
            result,
            Err(RunError::ComponentRegressed { key: "c".into() })
        );
        assert_eq!(
            ComponentState::Done.check_move("c", &ComponentState::Done),
            Ok(())
        );
    }
}
