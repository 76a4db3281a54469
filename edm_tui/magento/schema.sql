-- Minimal Magento 2.4 newsletter schema: the tables, columns, keys and foreign keys that a
-- newsletter sync reads or writes, plus the store seed rows (admin, two websites, three store
-- views). Column types, defaults and key names are those of Magento 2.4, and so are the
-- foreign-key names apart from the prefix.
--
-- `{prefix}` stands for Magento's table prefix (app/etc/env.php, db/table_prefix). It is part of
-- every table name and every foreign-key name, because InnoDB requires foreign-key names to be
-- unique per database, so two prefixes can share one database. edm_tui.magento.schema fills it
-- in and shortens foreign-key names that then exceed the 64-character identifier limit.
--
-- customer_entity keeps only the columns a newsletter sync reads (the real table has about 30).
-- store_group is included because store has a foreign key to it.

SET NAMES utf8mb4;
-- NO_AUTO_VALUE_ON_ZERO lets the seed rows insert website, group and store id 0.
SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION';
-- Magento's own connections run in UTC.
SET SESSION time_zone = '+00:00';

CREATE TABLE `{prefix}store_website` (
  `website_id` smallint unsigned NOT NULL AUTO_INCREMENT,
  `code` varchar(32) DEFAULT NULL,
  `name` varchar(64) DEFAULT NULL,
  `sort_order` smallint unsigned NOT NULL DEFAULT 0,
  `default_group_id` smallint unsigned NOT NULL DEFAULT 0,
  `is_default` smallint unsigned DEFAULT 0,
  PRIMARY KEY (`website_id`),
  UNIQUE KEY `STORE_WEBSITE_CODE` (`code`),
  KEY `STORE_WEBSITE_SORT_ORDER` (`sort_order`),
  KEY `STORE_WEBSITE_DEFAULT_GROUP_ID` (`default_group_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE `{prefix}store_group` (
  `group_id` smallint unsigned NOT NULL AUTO_INCREMENT,
  `website_id` smallint unsigned NOT NULL DEFAULT 0,
  `name` varchar(255) NOT NULL,
  `root_category_id` int unsigned NOT NULL DEFAULT 0,
  `default_store_id` smallint unsigned NOT NULL DEFAULT 0,
  `code` varchar(32) DEFAULT NULL,
  PRIMARY KEY (`group_id`),
  UNIQUE KEY `STORE_GROUP_CODE` (`code`),
  KEY `STORE_GROUP_WEBSITE_ID` (`website_id`),
  KEY `STORE_GROUP_DEFAULT_STORE_ID` (`default_store_id`),
  CONSTRAINT `{prefix}STORE_GROUP_WEBSITE_ID_STORE_WEBSITE_WEBSITE_ID` FOREIGN KEY (`website_id`)
    REFERENCES `{prefix}store_website` (`website_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE `{prefix}store` (
  `store_id` smallint unsigned NOT NULL AUTO_INCREMENT,
  `code` varchar(32) DEFAULT NULL,
  `website_id` smallint unsigned NOT NULL DEFAULT 0,
  `group_id` smallint unsigned NOT NULL DEFAULT 0,
  `name` varchar(255) NOT NULL,
  `sort_order` smallint unsigned NOT NULL DEFAULT 0,
  `is_active` smallint unsigned NOT NULL DEFAULT 0,
  PRIMARY KEY (`store_id`),
  UNIQUE KEY `STORE_CODE` (`code`),
  KEY `STORE_WEBSITE_ID` (`website_id`),
  KEY `STORE_IS_ACTIVE_SORT_ORDER` (`is_active`,`sort_order`),
  KEY `STORE_GROUP_ID` (`group_id`),
  CONSTRAINT `{prefix}STORE_GROUP_ID_STORE_GROUP_GROUP_ID` FOREIGN KEY (`group_id`)
    REFERENCES `{prefix}store_group` (`group_id`) ON DELETE CASCADE,
  CONSTRAINT `{prefix}STORE_WEBSITE_ID_STORE_WEBSITE_WEBSITE_ID` FOREIGN KEY (`website_id`)
    REFERENCES `{prefix}store_website` (`website_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE `{prefix}customer_entity` (
  `entity_id` int unsigned NOT NULL AUTO_INCREMENT,
  `website_id` smallint unsigned DEFAULT NULL,
  `email` varchar(255) DEFAULT NULL,
  `group_id` smallint unsigned NOT NULL DEFAULT 0,
  `store_id` smallint unsigned DEFAULT 0,
  `created_at` timestamp NOT NULL DEFAULT current_timestamp(),
  `updated_at` timestamp NOT NULL DEFAULT current_timestamp() ON UPDATE current_timestamp(),
  `is_active` smallint unsigned NOT NULL DEFAULT 1,
  `prefix` varchar(40) DEFAULT NULL,
  `firstname` varchar(255) DEFAULT NULL,
  `middlename` varchar(255) DEFAULT NULL,
  `lastname` varchar(255) DEFAULT NULL,
  `suffix` varchar(40) DEFAULT NULL,
  `confirmation` varchar(64) DEFAULT NULL,
  PRIMARY KEY (`entity_id`),
  UNIQUE KEY `CUSTOMER_ENTITY_EMAIL_WEBSITE_ID` (`email`,`website_id`),
  KEY `CUSTOMER_ENTITY_STORE_ID` (`store_id`),
  KEY `CUSTOMER_ENTITY_WEBSITE_ID` (`website_id`),
  KEY `CUSTOMER_ENTITY_FIRSTNAME` (`firstname`),
  KEY `CUSTOMER_ENTITY_LASTNAME` (`lastname`),
  CONSTRAINT `{prefix}CUSTOMER_ENTITY_STORE_ID_STORE_STORE_ID` FOREIGN KEY (`store_id`)
    REFERENCES `{prefix}store` (`store_id`) ON DELETE SET NULL,
  CONSTRAINT `{prefix}CUSTOMER_ENTITY_WEBSITE_ID_STORE_WEBSITE_WEBSITE_ID` FOREIGN KEY (`website_id`)
    REFERENCES `{prefix}store_website` (`website_id`) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- customer_id has no foreign key in Magento either: guests have 0, and deleting a customer
-- through SQL leaves orphans.
CREATE TABLE `{prefix}newsletter_subscriber` (
  `subscriber_id` int unsigned NOT NULL AUTO_INCREMENT,
  `store_id` smallint unsigned DEFAULT 0,
  `change_status_at` timestamp NULL DEFAULT NULL,
  `customer_id` int unsigned NOT NULL DEFAULT 0,
  `subscriber_email` varchar(150) DEFAULT NULL,
  `subscriber_status` int NOT NULL DEFAULT 0,
  `subscriber_confirm_code` varchar(32) DEFAULT NULL,
  PRIMARY KEY (`subscriber_id`),
  KEY `NEWSLETTER_SUBSCRIBER_CUSTOMER_ID` (`customer_id`),
  KEY `NEWSLETTER_SUBSCRIBER_STORE_ID` (`store_id`),
  KEY `NEWSLETTER_SUBSCRIBER_SUBSCRIBER_EMAIL` (`subscriber_email`),
  CONSTRAINT `{prefix}NEWSLETTER_SUBSCRIBER_STORE_ID_STORE_STORE_ID` FOREIGN KEY (`store_id`)
    REFERENCES `{prefix}store` (`store_id`) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- The template and queue tables exist so that newsletter_queue_link can be created: a sync
-- deletes a subscriber's unsent queue links when it unsubscribes them, as Magento does.
CREATE TABLE `{prefix}newsletter_template` (
  `template_id` int unsigned NOT NULL AUTO_INCREMENT,
  `template_code` varchar(150) DEFAULT NULL,
  `template_text` text DEFAULT NULL,
  `template_styles` text DEFAULT NULL,
  `template_type` int unsigned DEFAULT NULL,
  `template_subject` varchar(200) DEFAULT NULL,
  `template_sender_name` varchar(200) DEFAULT NULL,
  `template_sender_email` varchar(200) DEFAULT NULL,
  `template_actual` smallint unsigned DEFAULT 1,
  `added_at` timestamp NULL DEFAULT NULL,
  `modified_at` timestamp NULL DEFAULT NULL,
  `is_legacy` tinyint(1) NOT NULL DEFAULT 0,
  PRIMARY KEY (`template_id`),
  KEY `NEWSLETTER_TEMPLATE_TEMPLATE_ACTUAL` (`template_actual`),
  KEY `NEWSLETTER_TEMPLATE_ADDED_AT` (`added_at`),
  KEY `NEWSLETTER_TEMPLATE_MODIFIED_AT` (`modified_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

CREATE TABLE `{prefix}newsletter_queue` (
  `queue_id` int unsigned NOT NULL AUTO_INCREMENT,
  `template_id` int unsigned NOT NULL DEFAULT 0,
  `newsletter_type` int DEFAULT NULL,
  `newsletter_text` text DEFAULT NULL,
  `newsletter_styles` text DEFAULT NULL,
  `newsletter_subject` varchar(200) DEFAULT NULL,
  `newsletter_sender_name` varchar(200) DEFAULT NULL,
  `newsletter_sender_email` varchar(200) DEFAULT NULL,
  `queue_status` int unsigned NOT NULL DEFAULT 0,
  `queue_start_at` timestamp NULL DEFAULT NULL,
  `queue_finish_at` timestamp NULL DEFAULT NULL,
  PRIMARY KEY (`queue_id`),
  KEY `NEWSLETTER_QUEUE_TEMPLATE_ID` (`template_id`),
  CONSTRAINT `{prefix}NEWSLETTER_QUEUE_TEMPLATE_ID_NEWSLETTER_TEMPLATE_TEMPLATE_ID` FOREIGN KEY (`template_id`)
    REFERENCES `{prefix}newsletter_template` (`template_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- letter_sent_at IS NULL marks a letter that Magento's own queue has not sent yet.
CREATE TABLE `{prefix}newsletter_queue_link` (
  `queue_link_id` int unsigned NOT NULL AUTO_INCREMENT,
  `queue_id` int unsigned NOT NULL DEFAULT 0,
  `subscriber_id` int unsigned NOT NULL DEFAULT 0,
  `letter_sent_at` timestamp NULL DEFAULT NULL,
  PRIMARY KEY (`queue_link_id`),
  KEY `NEWSLETTER_QUEUE_LINK_SUBSCRIBER_ID` (`subscriber_id`),
  KEY `NEWSLETTER_QUEUE_LINK_QUEUE_ID_LETTER_SENT_AT` (`queue_id`,`letter_sent_at`),
  CONSTRAINT `{prefix}NEWSLETTER_QUEUE_LINK_QUEUE_ID_NEWSLETTER_QUEUE_QUEUE_ID` FOREIGN KEY (`queue_id`)
    REFERENCES `{prefix}newsletter_queue` (`queue_id`) ON DELETE CASCADE,
  CONSTRAINT `{prefix}NLTTR_QUEUE_LNK_SUBSCRIBER_ID_NLTTR_SUBSCRIBER_SUBSCRIBER_ID` FOREIGN KEY (`subscriber_id`)
    REFERENCES `{prefix}newsletter_subscriber` (`subscriber_id`) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;

-- Seed rows: the admin website, group and store 0 and website 1 with store view 1, as a fresh
-- Magento install has them. Scope tests also need a second store view on website 1 and a
-- second website with store view 3.
INSERT INTO `{prefix}store_website` (website_id, code, name, sort_order, default_group_id, is_default) VALUES
  (0, 'admin', 'Admin', 0, 0, 0),
  (1, 'base', 'Main Website', 0, 1, 1),
  (2, 'second', 'Second Website', 0, 2, 0);

INSERT INTO `{prefix}store_group` (group_id, website_id, name, root_category_id, default_store_id, code) VALUES
  (0, 0, 'Default', 0, 0, 'default'),
  (1, 1, 'Main Website Store', 2, 1, 'main_website_store'),
  (2, 2, 'Second Website Store', 2, 3, 'second_website_store');

INSERT INTO `{prefix}store` (store_id, code, website_id, group_id, name, sort_order, is_active) VALUES
  (0, 'admin', 0, 0, 'Admin', 0, 1),
  (1, 'default', 1, 1, 'Default Store View', 0, 1),
  (2, 'default_fr', 1, 1, 'French Store View', 1, 1),
  (3, 'second_default', 2, 2, 'Second Store View', 0, 1);
