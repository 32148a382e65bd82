//! Every word the report prints, in Kazakh and in Russian.
//!
//! The report is bilingual line by line: each label and each state is a [`Pair`], printed
//! `kk / ru` (once when both languages spell it the same). Kazakh comes first, as on the NUC's
//! own documents. The certificates are "тіркеу куәлігі" / "регистрационное свидетельство", the
//! term of the law on electronic documents and digital signatures.

use crate::{EntryState, KeyStorageWord};

/// One word or phrase in both languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pair {
    pub kk: &'static str,
    pub ru: &'static str,
}

impl Pair {
    const fn new(kk: &'static str, ru: &'static str) -> Self {
        Self { kk, ru }
    }

    /// `kk / ru`, or the word once when both languages spell it the same.
    pub(crate) fn both(self) -> String {
        if self.kk == self.ru {
            self.kk.to_owned()
        } else {
            format!("{} / {}", self.kk, self.ru)
        }
    }
}

pub(crate) const TITLE: Pair = Pair::new(
    "Тіркеу куәліктері туралы есеп",
    "Отчёт о регистрационных свидетельствах",
);
pub(crate) const ISSUER: Pair = Pair::new(
    "Қазақстан Республикасының Ұлттық куәландырушы орталығы",
    "Национальный удостоверяющий центр Республики Казахстан",
);
pub(crate) const HOLDER: Pair = Pair::new("Иесі", "Владелец");
pub(crate) const SUBJECT_ID: Pair = Pair::new("Сәйкестендіргіш", "Идентификатор");
pub(crate) const GENERATED_AT: Pair = Pair::new("Құрылған уақыты", "Время формирования");
pub(crate) const COUNT: Pair = Pair::new("Куәліктер саны", "Количество свидетельств");
pub(crate) const NONE_ISSUED: Pair = Pair::new(
    "Тіркеу куәліктері берілмеген.",
    "Регистрационные свидетельства не выдавались.",
);

pub(crate) const SERIAL: Pair = Pair::new("Сериялық нөмірі", "Серийный номер");
pub(crate) const PROFILE: Pair = Pair::new("Профилі", "Профиль");
pub(crate) const VALIDITY: Pair = Pair::new("Жарамдылық мерзімі", "Срок действия");
pub(crate) const STATE: Pair = Pair::new("Күйі", "Состояние");
pub(crate) const ISSUED_HOW: Pair = Pair::new("Берілу тәсілі", "Способ выдачи");
pub(crate) const KEY_STORAGE: Pair = Pair::new("Кілт тасығышы", "Носитель ключа");
pub(crate) const REVOKED_AT: Pair = Pair::new("Кері қайтарылған уақыты", "Время отзыва");
pub(crate) const REASON: Pair = Pair::new("Кері қайтару себебі", "Причина отзыва");

/// The footer: the page and the NUC key whose detached CMS signature comes with the report.
pub(crate) const PAGE: Pair = Pair::new("Бет", "Страница");
pub(crate) const OF_TOTAL: Pair = Pair::new("барлығы", "всего");
pub(crate) const SIGNING_KEY: Pair = Pair::new(
    "ҰКО кілті (бөлек CMS қолтаңбасы)",
    "Ключ НУЦ (отделённая подпись CMS)",
);

/// Printed for a field the caller left empty, so that an empty row is visibly empty.
pub(crate) const EMPTY: &str = "—";

pub(crate) fn state(state: EntryState) -> Pair {
    match state {
        EntryState::Valid => Pair::new("Жарамды", "Действительно"),
        EntryState::Expired => Pair::new("Мерзімі өткен", "Срок истёк"),
        EntryState::Revoked => Pair::new("Кері қайтарылған", "Отозвано"),
    }
}

pub(crate) fn key_storage(storage: KeyStorageWord) -> Pair {
    match storage {
        KeyStorageWord::File => Pair::new("Файл", "Файл"),
        KeyStorageWord::IdCard => Pair::new("Жеке куәлік", "Удостоверение личности"),
        KeyStorageWord::SimCard => Pair::new("SIM-карта", "SIM-карта"),
        KeyStorageWord::Token => Pair::new("Токен", "Токен"),
    }
}

/// The words for an RFC 5280 CRLReason, by its name: the RFC's spelling (`keyCompromise`) or
/// the service's (`key-compromise`), in any case. `None` for a name it does not know, which
/// the report then prints alone, as the caller gave it.
pub(crate) fn revocation_reason(name: &str) -> Option<Pair> {
    let key: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    let pair = match key.as_str() {
        "unspecified" => Pair::new("көрсетілмеген", "не указана"),
        "keycompromise" => Pair::new("кілттің құпиялылығы бұзылды", "компрометация ключа"),
        "cacompromise" => Pair::new(
            "куәландырушы орталық кілтінің құпиялылығы бұзылды",
            "компрометация ключа удостоверяющего центра",
        ),
        "affiliationchanged" => Pair::new("ұйыммен байланысы өзгерді", "изменение принадлежности"),
        "superseded" => Pair::new("жаңасымен ауыстырылды", "заменено новым"),
        "cessationofoperation" => Pair::new("қызметі тоқтатылды", "прекращение деятельности"),
        "certificatehold" => Pair::new("уақытша тоқтатылды", "приостановлено"),
        "removefromcrl" => Pair::new("тізімнен алынды", "исключено из списка отзыва"),
        "privilegewithdrawn" => Pair::new("өкілеттігі қайтарылды", "полномочия отозваны"),
        "aacompromise" => Pair::new(
            "атрибуттар орталығы кілтінің құпиялылығы бұзылды",
            "компрометация ключа центра атрибутов",
        ),
        _ => return None,
    };
    Some(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_prints_a_shared_word_once() {
        assert_eq!(HOLDER.both(), "Иесі / Владелец");
        assert_eq!(key_storage(KeyStorageWord::Token).both(), "Токен");
    }

    #[test]
    fn reasons_in_both_spellings() {
        assert_eq!(
            revocation_reason("keyCompromise"),
            revocation_reason("key-compromise")
        );
        assert!(revocation_reason("removeFromCRL").is_some());
        assert!(revocation_reason("aa-compromise").is_some());
        assert_eq!(revocation_reason("lost-my-cat"), None);
        assert_eq!(revocation_reason(""), None);
    }
}
